package blockmap

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVMLockExcludes: a second holder of a VM gets a *VMLockedError
// naming the first (pid, host, operation, since), other VMs stay free,
// and a released lock can be taken again.
func TestVMLockExcludes(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	backup(t, r, "web01", []*modelDisk{{name: "d0", data: make([]byte, testBS), changed: map[int64]bool{}}}, true, time.Time{})
	l, err := r.LockVM(ctx, "web01", "cairn import")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.LockVM(ctx, "web01", "cairn prune")
	var locked *VMLockedError
	if !errors.As(err, &locked) || !errors.Is(err, ErrInUse) {
		t.Fatalf("second lock of web01: %v, want a *VMLockedError wrapping ErrInUse", err)
	}
	host, _ := os.Hostname()
	h := locked.Holder
	if h.PID != os.Getpid() || h.Operation != "cairn import" || h.Host != host || h.Since.IsZero() || locked.VM != "web01" {
		t.Errorf("holder %+v of %+v, want this process's cairn import on %s", h, locked, host)
	}
	for _, want := range []string{`VM "web01"`, "pid ", "(cairn import)", "on host " + host, " since "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// BeginPoint and Forget take the same lock.
	if _, err := r.BeginPoint(ctx, "web01", PointOptions{}); !errors.As(err, &locked) {
		t.Errorf("BeginPoint of a locked VM: %v", err)
	}
	if _, err := r.Forget(ctx, "web01", []string{"latest"}, false); !errors.Is(err, ErrInUse) {
		t.Errorf("Forget of a locked VM: %v", err)
	}
	other, err := r.LockVM(ctx, "db01", "cairn backup")
	if err != nil {
		t.Fatalf("another VM is locked too: %v", err)
	}
	other.Release()
	l.Release()
	l.Release() // twice is harmless
	l2, err := r.LockVM(ctx, "web01", "cairn prune")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release()
}

// TestVMLockNested: the holder hands its lock down with WithVMLock, and
// code under that context (a backup job's BeginPoint, a run's prune)
// uses it instead of failing against itself; a nested Release keeps the
// outer lock held.
func TestVMLockNested(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	backup(t, r, "vm", []*modelDisk{{name: "d0", data: make([]byte, testBS), changed: map[int64]bool{}}}, true, time.Time{})
	outer, err := r.LockVM(ctx, "vm", "cairn serve run")
	if err != nil {
		t.Fatal(err)
	}
	held := WithVMLock(ctx, outer)
	inner, err := r.LockVM(held, "vm", "cairn backup")
	if err != nil {
		t.Fatalf("nested lock: %v", err)
	}
	inner.Release()
	if _, err := r.LockVM(ctx, "vm", "other"); !errors.Is(err, ErrInUse) {
		t.Fatalf("a nested release freed the outer lock: %v", err)
	}
	// A second Repo of the same directory (as a job opens it) sees it too.
	r2, err := Open(ctx, r.Dir()+"/.", Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r2.BeginPoint(held, "vm", PointOptions{Purpose: "cairn backup"})
	if err != nil {
		t.Fatalf("BeginPoint under the held lock: %v", err)
	}
	if err := s.Abort(held); err != nil {
		t.Fatal(err)
	}
	if res, err := r.Forget(held, "vm", []string{"latest"}, false); err != nil || len(res.Deleted) != 1 {
		t.Fatalf("Forget under the held lock: %v", err)
	}
	if _, err := r.LockVM(ctx, "vm", "other"); !errors.Is(err, ErrInUse) {
		t.Fatalf("the session's end freed the outer lock: %v", err)
	}
	// Another VM under the context is locked for real.
	o, err := r.LockVM(held, "vm2", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LockVM(held, "vm2", "y"); !errors.Is(err, ErrInUse) {
		t.Fatalf("vm2 taken twice under a context holding vm: %v", err)
	}
	o.Release()
	outer.Release()
	// Once released, the context no longer stands for the lock.
	l, err := r.LockVM(ctx, "vm", "other")
	if err != nil {
		t.Fatalf("lock after the outer release: %v", err)
	}
	if _, err := r.LockVM(held, "vm", "stale context"); !errors.Is(err, ErrInUse) {
		t.Fatalf("a context whose lock was released passed as holder: %v", err)
	}
	l.Release()
}

// TestVMLockWait: WaitLockVM gets the lock once its holder releases it,
// and gives up, holding nothing, when its context ends.
func TestVMLockWait(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	l, err := r.LockVM(ctx, "vm", "first")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() {
		_, err := r.WaitLockVM(cctx, "vm", "cancelled")
		cancelled <- err
	}()
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	got := make(chan *VMLock, 1)
	go func() {
		l2, err := r.WaitLockVM(ctx, "vm", "second")
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	l.Release()
	l2 := <-got
	if l2 == nil {
		t.FailNow()
	}
	if _, err := r.LockVM(ctx, "vm", "third"); !errors.Is(err, ErrInUse) {
		t.Fatalf("the waiter does not hold the lock: %v", err)
	}
	l2.Release()
}

// TestVMLockDiesWithItsProcess: a holder killed with SIGKILL leaves its
// lock file, with its record, behind, but not the lock.
func TestVMLockDiesWithItsProcess(t *testing.T) {
	if dir := os.Getenv("CAIRN_TEST_HOLD_VM_LOCK"); dir != "" {
		r, err := Open(context.Background(), dir, Options{})
		if err != nil {
			os.Exit(2)
		}
		if _, err := r.LockVM(context.Background(), "vm", "killed holder"); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Minute) // killed here
		os.Exit(0)
	}
	r := newTestRepo(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestVMLockDiesWithItsProcess$")
	cmd.Env = append(os.Environ(), "CAIRN_TEST_HOLD_VM_LOCK="+r.Dir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child: %q %v", line, err)
	}
	_, err = r.LockVM(context.Background(), "vm", "parent")
	var locked *VMLockedError
	if !errors.As(err, &locked) || locked.Holder.PID != cmd.Process.Pid || locked.Holder.Operation != "killed holder" {
		t.Fatalf("lock held by the child: %v (%+v)", err, locked)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(r.Dir(), "locks", "vm.lock")); err != nil {
		t.Fatalf("lock file: %v", err)
	}
	l, err := r.LockVM(context.Background(), "vm", "parent")
	if err != nil {
		t.Fatalf("lock after its holder was killed: %v", err)
	}
	l.Release()
}

// TestVMLockHolderRecord reads the records of this and older versions.
func TestVMLockHolderRecord(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		text string
		want string
	}{
		{`{"pid":42,"host":"h","operation":"cairn import","since":"2026-12-06T05:00:00Z"}`, "pid 42 (cairn import) on host h since 2026-12-06T05:00:00Z"},
		{"pid 42 (cairn import)\n", "pid 42 (cairn import)"},
		{"", "another process"},
		{"garbage", "garbage"},
	} {
		p := filepath.Join(dir, "x.lock")
		if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := readVMLockHolder(p).String(); got != tc.want {
			t.Errorf("%q reads as %q, want %q", tc.text, got, tc.want)
		}
	}
}

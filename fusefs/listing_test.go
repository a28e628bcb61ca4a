package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// requestLog collects go-fuse's request trace (Options.Debug).
type requestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *requestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// ops counts the requests of each kind received since the last call.
func (l *requestLog) ops() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`rx \d+: ([A-Z_]+)`).FindAllSubmatch(l.buf.Bytes(), -1) {
		out[string(m[1])]++
	}
	l.buf.Reset()
	return out
}

// walkTree lists every directory below dir and stats every entry, like
// ls -lR, and returns how many entries it saw.
func walkTree(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := os.Lstat(path); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return n
}

// listNames lists a directory's names, sorted.
func listNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// eventually retries check until it succeeds or 10 s have passed.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMountListingsAreCachedAndFollowTheCatalog: a second walk of the
// tree costs no directory request at all (no OPENDIR, RELEASEDIR or
// READDIR: the kernel keeps the listings), yet listings of the root and
// of a VM show points and VMs committed or deleted while mounted.
func TestMountListingsAreCachedAndFollowTheCatalog(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	repo, pts := testRepo(t, 2)
	trace := &requestLog{}
	logger := slog.New(slog.NewTextHandler(trace, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mnt := t.TempDir()
	srv, err := Mount(ctx, repo, mnt, Options{Logger: logger, Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })

	first := walkTree(t, mnt)
	if ops := trace.ops(); ops["READDIRPLUS"]+ops["READDIR"] == 0 {
		t.Fatalf("first walk sent no READDIR: %v", ops)
	}
	// root, vm, latest, 2 x (point, info.json, disks, disk0.img, disk0.vmdk)
	if want := 3 + 2*5; first != want {
		t.Errorf("first walk saw %d entries, want %d", first, want)
	}
	if again := walkTree(t, mnt); again != first {
		t.Errorf("second walk saw %d entries, first %d", again, first)
	}
	ops := trace.ops()
	for _, op := range []string{"OPENDIR", "RELEASEDIR", "READDIR", "READDIRPLUS"} {
		if ops[op] != 0 {
			t.Errorf("second walk of an unchanged tree sent %d %s requests (all: %v)", ops[op], op, ops)
		}
	}

	vmDir := filepath.Join(mnt, "vm")
	before, err := os.Stat(vmDir)
	if err != nil {
		t.Fatal(err)
	}
	p3 := commitPoint(t, repo, "vm", 3)
	eventually(t, "new point listed", func() error {
		names, err := listNames(vmDir)
		if err != nil {
			return err
		}
		if want := []string{pts[0].ID, pts[1].ID, p3.ID, latestName}; !slices.Equal(names, want) {
			return fmt.Errorf("vm/ lists %v, want %v", names, want)
		}
		return nil
	})
	after, err := os.Stat(vmDir)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().After(before.ModTime()) {
		t.Errorf("vm/ mtime %v after a new point, was %v", after.ModTime(), before.ModTime())
	}

	commitPoint(t, repo, "vm2", 1)
	eventually(t, "new VM listed", func() error {
		names, err := listNames(mnt)
		if err != nil {
			return err
		}
		if want := []string{"vm", "vm2"}; !slices.Equal(names, want) {
			return fmt.Errorf("root lists %v, want %v", names, want)
		}
		return nil
	})

	if _, err := repo.Forget(ctx, "vm", []string{pts[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "forgotten point gone", func() error {
		if _, err := os.Stat(filepath.Join(vmDir, pts[0].ID)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("stat of the forgotten point: %v, want not found", err)
		}
		names, err := listNames(vmDir)
		if err != nil {
			return err
		}
		if want := []string{pts[1].ID, p3.ID, latestName}; !slices.Equal(names, want) {
			return fmt.Errorf("vm/ lists %v, want %v", names, want)
		}
		return nil
	})

	vm2, err := listNames(filepath.Join(mnt, "vm2"))
	if err != nil || len(vm2) != 2 {
		t.Fatalf("vm2/ lists %v (%v), want a point and latest", vm2, err)
	}
	if _, err := repo.Forget(ctx, "vm2", vm2[:1], false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "VM without points gone", func() error {
		names, err := listNames(mnt)
		if err != nil {
			return err
		}
		if want := []string{"vm"}; !slices.Equal(names, want) {
			return fmt.Errorf("root lists %v, want %v", names, want)
		}
		return nil
	})
	// A full walk sees the tree as it is now.
	if got, want := walkTree(t, mnt), 3+2*5; got != want {
		t.Errorf("walk after the changes saw %d entries, want %d", got, want)
	}
}

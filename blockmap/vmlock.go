package blockmap

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// VMLock is the exclusive right to change one VM of a repository: to write
// its points (a backup, an import, a verify that repairs), to delete them
// (prune, forget, the sweep of a dead writer's leftovers), and to act on
// the VM itself on the repository's behalf (a backup job's snapshot and
// its cleanup of the snapshots a killed run left, a restore over the VM).
//
// It is an flock on <repo>/locks/<vm>.lock, so the kernel drops it when
// its process dies: a killed holder never leaves a stale lock. While held
// the file names the holder (VMLockHolder, one JSON line), which is what
// VMLockedError reports to the next comer; the file itself stays behind.
//
// A holder that calls code which takes the lock itself (a backup job that
// begins a point, a server run that prunes after its backup) passes the
// lock down with WithVMLock: LockVM under that context returns a nested
// handle instead of waiting for itself.
type VMLock struct {
	repo   string
	vm     string
	holder VMLockHolder
	nested bool

	mu sync.Mutex
	f  *os.File // nil once released
}

// VMLockHolder is who holds a VM lock, as its lock file records it.
type VMLockHolder struct {
	PID       int       `json:"pid"`
	Host      string    `json:"host,omitempty"`
	Operation string    `json:"operation,omitempty"`
	Since     time.Time `json:"since,omitzero"`
}

// String is the holder as one phrase: "pid 42 on host h (cairn import)
// since 2026-12-06T05:00:00Z".
func (h VMLockHolder) String() string {
	if h.PID == 0 {
		if h.Operation != "" {
			return h.Operation
		}
		return "another process"
	}
	s := "pid " + strconv.Itoa(h.PID)
	if h.Operation != "" {
		s += " (" + h.Operation + ")"
	}
	if h.Host != "" {
		s += " on host " + h.Host
	}
	if !h.Since.IsZero() {
		s += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	return s
}

// VMLockedError is returned when another holder has the VM's lock. It
// wraps ErrInUse.
type VMLockedError struct {
	Repo   string
	VM     string
	Holder VMLockHolder // zero when the holder did not record itself yet
}

func (e *VMLockedError) Error() string {
	return fmt.Sprintf("VM %q in repository %s is in use by %s", e.VM, e.Repo, e.Holder)
}

// Unwrap makes errors.Is(err, ErrInUse) hold.
func (e *VMLockedError) Unwrap() error { return ErrInUse }

// vmLockPath is the lock file of vm.
func (r *Repo) vmLockPath(vm string) string { return filepath.Join(r.dir, "locks", vm+".lock") }

// LockVM takes vm's lock for operation (a phrase naming the holder, e.g.
// "cairn import") without waiting: when someone else holds it, the error
// is a *VMLockedError. When ctx carries this VM's lock (WithVMLock), the
// result is a nested handle whose Release does nothing.
func (r *Repo) LockVM(ctx context.Context, vm, operation string) (*VMLock, error) {
	return r.lockVM(ctx, vm, operation, false)
}

// WaitLockVM is LockVM that waits, polling, until the lock is free or ctx
// ends.
func (r *Repo) WaitLockVM(ctx context.Context, vm, operation string) (*VMLock, error) {
	return r.lockVM(ctx, vm, operation, true)
}

func (r *Repo) lockVM(ctx context.Context, vm, operation string, wait bool) (*VMLock, error) {
	if err := ValidateName("VM", vm); err != nil {
		return nil, err
	}
	if held := heldVMLock(ctx, r.dir, vm); held != nil {
		return &VMLock{repo: held.repo, vm: vm, holder: held.holder, nested: true}, nil
	}
	path := r.vmLockPath(vm)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("lock VM %q: %w", vm, err)
	}
	delay := 10 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("lock VM %q: %s: %w", vm, path, err)
		}
		if !wait {
			f.Close()
			return nil, &VMLockedError{Repo: r.dir, VM: vm, Holder: readVMLockHolder(path)}
		}
		if ctx.Err() != nil {
			f.Close()
			return nil, fmt.Errorf("wait for VM %q (in use by %s): %w", vm, readVMLockHolder(path), ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
	host, _ := os.Hostname()
	l := &VMLock{repo: r.dir, vm: vm, f: f,
		holder: VMLockHolder{PID: os.Getpid(), Host: host, Operation: operation, Since: time.Now().UTC().Truncate(time.Second)}}
	// The record is for the next comer's error message only: failing to
	// write it does not fail the lock.
	b, _ := json.Marshal(l.holder)
	_ = f.Truncate(0)
	_, _ = f.WriteAt(append(b, '\n'), 0)
	return l, nil
}

// readVMLockHolder reads a lock file's holder record: JSON, or the
// "pid N (purpose)" line of older cairn versions.
func readVMLockHolder(path string) VMLockHolder {
	b, err := os.ReadFile(path)
	if err != nil {
		return VMLockHolder{}
	}
	text := strings.TrimSpace(string(b))
	var h VMLockHolder
	if json.Unmarshal([]byte(text), &h) == nil {
		return h
	}
	if rest, ok := strings.CutPrefix(text, "pid "); ok {
		num, op, _ := strings.Cut(rest, " ")
		if pid, err := strconv.Atoi(num); err == nil {
			return VMLockHolder{PID: pid, Operation: strings.TrimSuffix(strings.TrimPrefix(op, "("), ")")}
		}
	}
	return VMLockHolder{Operation: text}
}

// VM is the locked VM.
func (l *VMLock) VM() string { return l.vm }

// Holder is who holds the lock (this process; for a nested handle, the
// outer holder's record).
func (l *VMLock) Holder() VMLockHolder { return l.holder }

// Release gives the lock up. It is safe to call more than once; on a
// nested handle it does nothing.
func (l *VMLock) Release() {
	if l == nil || l.nested {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// held reports whether the lock is still held (a nested handle: always).
func (l *VMLock) held() bool {
	if l.nested {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f != nil
}

type vmLockKey struct{}

// heldLocks is the chain of VM locks a context carries.
type heldLocks struct {
	l    *VMLock
	next *heldLocks
}

// WithVMLock returns a context under which the repository's operations on
// l's VM use l instead of taking the VM's lock again: the holder of a lock
// hands it to the code it calls. l must outlive every use of the context.
func WithVMLock(ctx context.Context, l *VMLock) context.Context {
	next, _ := ctx.Value(vmLockKey{}).(*heldLocks)
	return context.WithValue(ctx, vmLockKey{}, &heldLocks{l: l, next: next})
}

// heldVMLock is the still-held lock of vm in repository dir that ctx
// carries, if any.
func heldVMLock(ctx context.Context, dir, vm string) *VMLock {
	if ctx == nil {
		return nil
	}
	hl, _ := ctx.Value(vmLockKey{}).(*heldLocks)
	for ; hl != nil; hl = hl.next {
		if hl.l.vm == vm && sameDir(hl.l.repo, dir) && hl.l.held() {
			return hl.l
		}
	}
	return nil
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

package blockmap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// vmLock is the exclusive right to write one VM's points (backups, prune,
// forget). It is an flock on <repo>/locks/<vm>.lock, so it dies with its
// process: a killed writer never leaves a stale lock.
type vmLock struct{ f *os.File }

func (r *Repo) lockVM(vm, purpose string) (*vmLock, error) {
	path := filepath.Join(r.dir, "locks", vm+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("lock VM %q: %w", vm, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		who := strings.TrimSpace(string(holder))
		if who == "" {
			who = "another process"
		}
		return nil, fmt.Errorf("VM %q in repository %s is in use by %s: %w; wait for it to finish", vm, r.dir, who, ErrInUse)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d (%s)\n", os.Getpid(), purpose)), 0)
	return &vmLock{f: f}, nil
}

func (l *vmLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
	l.f = nil
}

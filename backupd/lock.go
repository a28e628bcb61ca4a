package backupd

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockVM takes <repo>/jobs/locks/<vm>.lock so that only one backup of a VM
// runs at a time: its stale-snapshot cleanup must never remove the
// snapshot of a live run. The kernel drops the lock when the process dies.
func lockVM(repoDir, vm string) (func(), error) {
	dir := filepath.Join(repoDir, "jobs", "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock VM %s: %w", vm, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, url.PathEscape(vm)+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock VM %s: %w", vm, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("VM %s is being backed up by another cairn process", vm)
		}
		return nil, fmt.Errorf("lock VM %s: %w", vm, err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

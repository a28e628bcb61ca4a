package blockmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReserveFileName is the repository's space reserve: a preallocated file
// that forget and prune delete when the filesystem is (nearly) full, so
// that the index can be opened and written (Badger writes a LOCK file, a
// write-ahead log and new tables) and the space of deleted points
// released. Without it a repository on a full filesystem could not free
// space itself. It is made again once there is room.
const ReserveFileName = "reserve"

// Reserve sizes: MaxReserve on filesystems of 1 GiB and more, 1/16 of
// the filesystem on smaller ones (but never below minReserve).
const (
	MaxReserve = 64 << 20
	minReserve = 1 << 20
)

func (r *Repo) reservePath() string { return filepath.Join(r.dir, ReserveFileName) }

// reserveSize is the reserve's size on the repository's filesystem.
func (r *Repo) reserveSize() int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(r.dir, &st); err != nil {
		return MaxReserve
	}
	return min(MaxReserve, max(minReserve, int64(st.Blocks)*int64(st.Bsize)/16))
}

// freeBytes is the space an unprivileged writer may still use on the
// repository's filesystem.
func (r *Repo) freeBytes() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(r.dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// ensureReserve makes the reserve when it is missing (or sparse) and the filesystem
// has room for it twice over (so that making it never fills the disk);
// with warn, it says so when there is no room. Failures are logged: the
// reserve is a safety margin, not data.
func (r *Repo) ensureReserve(warn bool) {
	path := r.reservePath()
	size := r.reserveSize()
	refill := false
	if fi, err := os.Stat(path); err == nil && fi.Size() >= size {
		// A copy by a tool that turns zeros into holes (rsync -S,
		// cp --sparse=always, tar --sparse) keeps the size but not the
		// space: such a reserve frees nothing when the disk is full.
		held := int64(-1)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			held = st.Blocks * 512
		}
		if held < 0 || held >= size {
			return
		}
		refill = true
	}
	free, err := r.freeBytes()
	if err != nil || free < 2*size {
		if err == nil && warn {
			r.log.Warn("the repository's filesystem is nearly full: no space reserve for forget and prune (free space, then any writer makes one)",
				"dir", r.dir, "free", free, "reserve", size)
		}
		return
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, FileMode)
	if err != nil {
		r.log.Warn("cannot make the repository's space reserve", "path", path, "error", err)
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		if refill {
			// Zeros written again would be dropped again (a filesystem
			// that compresses them away): keep the reserve as it is.
			f.Close()
			os.Remove(tmp)
			return
		}
		err = writeZeros(f, size) // a filesystem without fallocate
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && refill {
		r.log.Info("allocated the repository's space reserve again: it had no space (copied by a tool that makes zeros holes, like rsync -S)", "path", path)
	}
	if err != nil {
		os.Remove(tmp)
		r.log.Warn("cannot make the repository's space reserve", "path", path, "error", err)
	}
}

func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// releaseReserve deletes the reserve when the filesystem has less free
// space than the reserve's size, so that a deletion can run; it reports
// whether it did.
func (r *Repo) releaseReserve() bool {
	free, err := r.freeBytes()
	if err != nil || free >= r.reserveSize() {
		return false
	}
	if err := os.Remove(r.reservePath()); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("cannot release the repository's space reserve", "error", err)
		}
		return false
	}
	r.log.Warn("the repository's filesystem is full: released the space reserve to delete points", "dir", r.dir, "free", fmt.Sprint(free))
	return true
}

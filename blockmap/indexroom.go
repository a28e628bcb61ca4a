package blockmap

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxIndexRoom is the most free space a read-write open of the index asks
// for: Badger writes its write-ahead log (twice the memtable size) and the
// tables it flushes through memory maps of sparse files, and a write to
// such a map on a full filesystem is not an error but a SIGBUS that kills
// the process mid-write. Asking for the room first turns that into a
// clear "no space left on device" before anything is written.
const maxIndexRoom = 16 << 20

// ErrIndexNoRoom is wrapped (with syscall.ENOSPC) by the error of an index
// write refused because its filesystem has too little free space.
var ErrIndexNoRoom = fmt.Errorf("too little free space to write the index: %w", unix.ENOSPC)

// indexRoom is the free space a read-write open of the index needs: at
// most maxIndexRoom, and never more than the space reserve (reserve.go),
// so that forget and prune, which release the reserve on a full
// filesystem, can always write.
func (r *Repo) indexRoom() int64 {
	return min(maxIndexRoom, r.reserveSize())
}

// indexFree is the free space of the index's filesystem this process may
// use (root may use the blocks reserved for root); -1 for a filesystem
// that reports no size (some FUSE and network filesystems).
func (r *Repo) indexFree() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(r.dir, "index"), &st); err != nil {
		return 0, err
	}
	if st.Blocks == 0 {
		return -1, nil
	}
	avail := st.Bavail
	if os.Geteuid() == 0 {
		avail = st.Bfree
	}
	return int64(avail) * int64(st.Bsize), nil
}

// checkIndexRoom refuses a read-write open of the index when its
// filesystem has less free space than indexRoom. Free space is what this
// process may use (root may use the blocks reserved for root). A
// filesystem that reports no size at all (some FUSE and network
// filesystems) is not checked.
func (r *Repo) checkIndexRoom() error {
	dir := filepath.Join(r.dir, "index")
	free, err := r.indexFree()
	if err != nil || free < 0 {
		return nil
	}
	need := r.indexRoom()
	if free >= need {
		return nil
	}
	return &fs.PathError{Op: "write the index", Path: dir,
		Err: fmt.Errorf("%w (%d bytes free on its filesystem, a write may need %d)", ErrIndexNoRoom, free, need)}
}

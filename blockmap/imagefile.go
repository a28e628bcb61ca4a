package blockmap

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/directio"
)

// imageFile is the delta image a session writes. Large writes whose
// buffer, offset and length suit direct I/O go straight to the device
// (O_DIRECT: no copy into the page cache, no writeback work, and the
// Commit fsync finds only metadata left); small writes, anything
// unaligned, and filesystems without O_DIRECT take the ordinary buffered
// path. Both paths write the same file, so Sync covers both.
//
// Small writes are buffered because a direct write is synchronous: each
// costs an allocation (fallocate) and a device round trip while holding
// the inode, so the scattered 64 KiB blocks of an incremental serialize;
// through the page cache they cost a memory copy each, a background
// goroutine starts their writeback every writebackEvery bytes while the
// copy goes on, and Commit's fsync waits only for the rest. Measured on the 1 % incremental of
// the repository benchmark (655 blocks of 64 KiB, cold cache, alternating
// runs): 0.33 s per import with direct writes, 0.28 s with buffered ones.
//
// Before a direct write the range is allocated with fallocate: a direct
// write into allocated (unwritten) extents is an overwrite, which ext4
// runs concurrently under a shared inode lock; into a hole it would take
// the inode lock exclusively for the whole I/O.
type imageFile struct {
	f       *os.File // buffered
	direct  *os.File // O_DIRECT twin, nil when unsupported
	align   directio.Align
	noAlloc atomic.Bool

	buffered atomic.Int64 // bytes written through the page cache

	kick     chan struct{}  // wakes the writeback goroutine (nil until the first kick)
	kickOnce sync.Once      // starts it
	kickDone sync.WaitGroup // it has ended (Close waits before closing f)
}

// directMinWrite is the smallest write sent with O_DIRECT (see imageFile).
const directMinWrite = 1 << 20

// writebackEvery is how many buffered bytes pass between writeback kicks.
const writebackEvery = 2 << 20

// createImageFile creates (truncates) the delta image at path.
func createImageFile(path string) (*imageFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, FileMode)
	if err != nil {
		return nil, err
	}
	im := &imageFile{f: f}
	if d, align, err := directio.Open(path, os.O_WRONLY); err == nil {
		im.direct, im.align = d, align
	}
	return im, nil
}

// Name is the image's path.
func (im *imageFile) Name() string { return im.f.Name() }

// WriteAt writes p at off, directly where it can.
func (im *imageFile) WriteAt(p []byte, off int64) error {
	if im.direct != nil && len(p) >= directMinWrite && im.align.Start(p, off) {
		n := int64(len(p)) / im.align.Off * im.align.Off
		if n > 0 {
			if err := im.writeDirect(p[:n], off); err != nil {
				return err
			}
			p, off = p[n:], off+n
		}
	}
	if len(p) == 0 {
		return nil
	}
	return im.writeBuffered(p, off)
}

func (im *imageFile) writeDirect(p []byte, off int64) error {
	if !im.noAlloc.Load() {
		err := unix.Fallocate(int(im.direct.Fd()), 0, off, int64(len(p)))
		switch {
		case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
			im.noAlloc.Store(true) // the write allocates; correct, only less parallel
		case err != nil:
			return fmt.Errorf("allocate %d bytes at %d: %w", len(p), off, err)
		}
	}
	for len(p) > 0 {
		n, err := im.direct.WriteAt(p, off)
		if err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (im *imageFile) writeBuffered(p []byte, off int64) error {
	if _, err := im.f.WriteAt(p, off); err != nil {
		return err
	}
	if after := im.buffered.Add(int64(len(p))); after/writebackEvery != (after-int64(len(p)))/writebackEvery {
		im.startWriteback()
	}
	return nil
}

// startWriteback asks a background goroutine to start writeback of what
// is written so far (sync_file_range WRITE: it only starts the I/O), so
// that Commit's fsync finds little left to do and the page cache stays
// clean. The writer does not wait for it: submitting the I/O can block
// on the device's queue, and the copy's reads should not. Durability is
// still Sync's alone.
func (im *imageFile) startWriteback() {
	im.kickOnce.Do(func() {
		im.kick = make(chan struct{}, 1)
		im.kickDone.Add(1)
		go func() {
			defer im.kickDone.Done()
			for range im.kick {
				_ = unix.SyncFileRange(int(im.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			}
		}()
	})
	select {
	case im.kick <- struct{}{}:
	default: // a kick is pending: it covers these bytes too
	}
}

// stopWriteback ends the writeback goroutine, if one was started.
func (im *imageFile) stopWriteback() {
	im.kickOnce.Do(func() {}) // none can start after this
	if im.kick != nil {
		close(im.kick)
		im.kickDone.Wait()
		im.kick = nil
	}
}

// Sync makes everything written durable.
func (im *imageFile) Sync() error { return im.f.Sync() }

// Close closes both descriptors.
func (im *imageFile) Close() error {
	im.stopWriteback()
	if im.direct != nil {
		im.direct.Close()
	}
	return im.f.Close()
}

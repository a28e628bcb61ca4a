package nbdserve

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// overlayBlock is the overlay's granularity: a region is written or not
// per 4 KiB (the filesystem block that SEEK_DATA reports).
const overlayBlock = 4096

// overlay is a sparse file taking the writes of an export.
type overlay struct {
	f       *os.File
	src     io.ReaderAt
	size    int64
	mu      sync.RWMutex
	written []uint64 // bitmap of overlay blocks
}

// overlayBaseXattr keeps Options.OverlayBase with the overlay file.
const overlayBaseXattr = "user.cairn.overlay-base"

// ErrOverlayBase means an existing overlay was written over another disk.
var ErrOverlayBase = errors.New("overlay was written over another disk")

// openOverlay opens (creating) the overlay file at path for a disk of
// size bytes; blocks it already has allocated count as written. A base
// (see Options.OverlayBase) is recorded on a new overlay and must match
// the one recorded on an existing one.
func openOverlay(path string, src io.ReaderAt, size int64, base string) (*overlay, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	if fi.Size() != 0 && fi.Size() != size {
		f.Close()
		return nil, fmt.Errorf("overlay %s is %d bytes but the disk is %d: %w (use a new file)", path, fi.Size(), size, ErrOverlaySize)
	}
	if base != "" {
		buf := make([]byte, 1024)
		n, err := unix.Fgetxattr(int(f.Fd()), overlayBaseXattr, buf)
		switch {
		case err == nil && string(buf[:n]) != base:
			f.Close()
			return nil, fmt.Errorf("overlay %s holds writes made over %s, not over %s: %w (use a new file)", path, buf[:n], base, ErrOverlayBase)
		case errors.Is(err, unix.ENODATA):
			// new, or from before bases were kept: it is this base's now
			_ = unix.Fsetxattr(int(f.Fd()), overlayBaseXattr, []byte(base), 0)
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	nb := (size + overlayBlock - 1) / overlayBlock
	o := &overlay{f: f, src: src, size: size, written: make([]uint64, (nb+63)/64)}
	// what an earlier export wrote: the file's allocated blocks
	off := int64(0)
	for off < size {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no more data
		}
		h, err := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
		if err != nil {
			h = size
		}
		for b := d / overlayBlock; b*overlayBlock < h; b++ {
			o.written[b/64] |= 1 << (b % 64)
		}
		off = h
	}
	return o, nil
}

// ErrOverlaySize means an existing overlay file does not fit the disk.
var ErrOverlaySize = errors.New("overlay size does not match the disk")

func (o *overlay) isWritten(b int64) bool { return o.written[b/64]&(1<<(b%64)) != 0 }

// ReadAt reads through the overlay: written blocks from the file, the
// rest from the source.
func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		b := pos / overlayBlock
		w := o.isWritten(b)
		end := pos
		for end < off+int64(len(p)) && o.isWritten(end/overlayBlock) == w {
			end = (end/overlayBlock + 1) * overlayBlock
		}
		end = min(end, off+int64(len(p)))
		var err error
		if w {
			_, err = o.f.ReadAt(p[n:end-off], pos)
		} else {
			_, err = o.src.ReadAt(p[n:end-off], pos)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		n = int(end - off)
	}
	return n, nil
}

// WriteAt writes p (nil: zeros of length n) at off into the overlay,
// first copying the source's part of partially written blocks.
func (o *overlay) WriteAt(p []byte, n int64, off int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	end := off + n
	first, last := off/overlayBlock, (end-1)/overlayBlock
	buf := make([]byte, overlayBlock)
	for _, b := range []int64{first, last} {
		bs, be := b*overlayBlock, min((b+1)*overlayBlock, o.size)
		if o.isWritten(b) || (off <= bs && end >= be) {
			continue
		}
		if _, err := o.src.ReadAt(buf[:be-bs], bs); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if _, err := o.f.WriteAt(buf[:be-bs], bs); err != nil {
			return err
		}
		o.written[b/64] |= 1 << (b % 64)
	}
	if p == nil {
		z := make([]byte, min(n, 1<<20))
		for pos := off; pos < end; pos += int64(len(z)) {
			if _, err := o.f.WriteAt(z[:min(int64(len(z)), end-pos)], pos); err != nil {
				return err
			}
		}
	} else if _, err := o.f.WriteAt(p, off); err != nil {
		return err
	}
	for b := first; b <= last; b++ {
		o.written[b/64] |= 1 << (b % 64)
	}
	return nil
}

// writtenFrom reports whether the block at off is written and where the
// run of blocks with the same state ends (at most limit).
func (o *overlay) writtenFrom(off, limit int64) (bool, int64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	w := o.isWritten(off / overlayBlock)
	end := off
	for end < limit && o.isWritten(end/overlayBlock) == w {
		end = (end/overlayBlock + 1) * overlayBlock
	}
	return w, min(end, limit)
}

func (o *overlay) Sync() error  { return o.f.Sync() }
func (o *overlay) Close() error { return o.f.Close() }

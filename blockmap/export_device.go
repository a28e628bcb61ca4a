package blockmap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrDeviceTooSmall is returned by ExportDevice for a device smaller than
// the disk; nothing was written.
var ErrDeviceTooSmall = errors.New("device is smaller than the disk")

// ExportDevice writes the disk onto f, a block device (a physical disk, a
// LUN, a loop device), which keeps its size and its old content: the
// point's data is written at its offsets and its holes are zeroed
// (BLKZEROOUT, or zeros written where the device cannot), so the device's
// first Size() bytes read exactly as the point; bytes past the disk's size
// are left as they are. The device is flushed at the end. A device smaller
// than the disk is refused with ErrDeviceTooSmall before anything is
// written.
func (dr *DiskReader) ExportDevice(ctx context.Context, f *os.File, progress func(done int64)) error {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("export to %s: size of the device: %w", f.Name(), err)
	}
	if size < dr.Size() {
		return fmt.Errorf("export to %s: %w: it holds %d bytes, disk %s needs %d", f.Name(), ErrDeviceTooSmall, size, dr.disk.Name, dr.Size())
	}
	buf := make([]byte, exportChunk)
	var done, pos int64
	for _, e := range append(dr.DataExtents(), Extent{Offset: dr.Size()}) {
		if e.Offset > pos {
			if err := zeroDevice(ctx, f, pos, e.Offset-pos); err != nil {
				return fmt.Errorf("export to %s: zero %d bytes at %d: %w", f.Name(), e.Offset-pos, pos, err)
			}
		}
		if err := dr.copyExtent(ctx, f, buf, e, &done, progress); err != nil {
			return err
		}
		pos = e.Offset + e.Length
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("export to %s: flush: %w", f.Name(), err)
	}
	return nil
}

// zeroDevice makes length bytes at off of the device f read as zeros:
// BLKZEROOUT where the device offers it (aligned to 512 bytes), written
// zeros for the rest.
func zeroDevice(ctx context.Context, f *os.File, off, length int64) error {
	end := off + length
	a, b := (off+511)&^511, end&^511
	if b > a {
		r := [2]uint64{uint64(a), uint64(b - a)}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r)))
		if errno == 0 {
			if err := writeZerosAt(ctx, f, off, a-off); err != nil {
				return err
			}
			return writeZerosAt(ctx, f, b, end-b)
		}
	}
	return writeZerosAt(ctx, f, off, length)
}

func writeZerosAt(ctx context.Context, f *os.File, off, length int64) error {
	zero := make([]byte, min(length, exportChunk))
	for length > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(length, int64(len(zero)))
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

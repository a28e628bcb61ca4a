package copier

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
)

// OpenSource opens a local raw image or block device for reading and
// returns its size. Anything else (a FIFO, a directory, a character
// device) is refused by name before it is opened: opening a FIFO with no
// writer would block for good.
func OpenSource(path string) (*os.File, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open source %s: %w", path, err)
	}
	if err := sourceKind(path, fi); err != nil {
		return nil, 0, err
	}
	// O_NONBLOCK: should path have become a FIFO since the Stat, the open
	// still returns at once (and the check below refuses it).
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("open source %s: %w", path, err)
	}
	if fi, err = f.Stat(); err == nil {
		err = sourceKind(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat source %s: %w", path, err)
	}
	var size int64
	switch {
	case fi.Mode().IsRegular():
		size = fi.Size()
	default:
		size, err = f.Seek(0, 2)
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("size of block device %s: %w", path, err)
		}
	}
	if size == 0 {
		f.Close()
		return nil, 0, fmt.Errorf("source %s is empty: a disk image must have a size", path)
	}
	return f, size, nil
}

// sourceKind accepts regular files and block devices.
func sourceKind(path string, fi os.FileInfo) error {
	m := fi.Mode()
	switch {
	case m.IsRegular(), m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		return nil
	case m&os.ModeNamedPipe != 0:
		return fmt.Errorf("source %s is a FIFO: a disk image must be a regular file or a block device (it is read at random offsets); copy the stream to a file first", path)
	}
	return fmt.Errorf("source %s is not a regular file or block device (%s)", path, m.Type())
}

// DataExtents lists the allocated areas of a file with SEEK_DATA and
// SEEK_HOLE. Where the filesystem or device cannot tell, the whole file is
// one extent.
func DataExtents(f *os.File, size int64) ([]blockmap.Extent, error) {
	fd := int(f.Fd())
	var out []blockmap.Extent
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return []blockmap.Extent{{Offset: 0, Length: size}}, nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return []blockmap.Extent{{Offset: 0, Length: size}}, nil
		}
		hole = min(hole, size)
		if hole > data {
			out = append(out, blockmap.Extent{Offset: data, Length: hole - data})
		}
		off = hole
	}
	return out, nil
}

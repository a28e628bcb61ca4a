package copier

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
)

// OpenSource opens a local raw image or block device for reading and
// returns its size.
func OpenSource(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open source %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat source %s: %w", path, err)
	}
	var size int64
	switch {
	case fi.Mode().IsRegular():
		size = fi.Size()
	case fi.Mode()&os.ModeDevice != 0:
		size, err = f.Seek(0, 2)
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("size of block device %s: %w", path, err)
		}
	default:
		f.Close()
		return nil, 0, fmt.Errorf("source %s is not a regular file or block device", path)
	}
	if size == 0 {
		f.Close()
		return nil, 0, fmt.Errorf("source %s is empty: a disk image must have a size", path)
	}
	return f, size, nil
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

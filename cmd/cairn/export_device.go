package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/cairnbackup/cairn/blockmap"
)

// exportToSpecial writes a point's disk to out when out exists and is not
// a regular file: a block device gets the disk written over it (data, and
// zeros for the holes; a device smaller than the disk, or one in use, is
// refused before anything is written), a character device or a FIFO
// (/dev/null, a pipe) the whole stream. Such a path is never truncated or
// removed, whatever happens.
func exportToSpecial(ctx context.Context, out string, mode fs.FileMode, dr *blockmap.DiskReader, progress func(int64)) error {
	switch {
	case mode.IsDir():
		return fmt.Errorf("export: %s is a directory: give the path of the image file to write", out)
	case mode&fs.ModeDevice != 0 && mode&fs.ModeCharDevice == 0:
		// O_EXCL on a block device: refused (EBUSY) while it is mounted or
		// otherwise held open exclusively.
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_EXCL, 0)
		if err != nil {
			if errors.Is(err, syscall.EBUSY) {
				return fmt.Errorf("export: %w (is the device mounted or in use? unmount it first)", err)
			}
			return fmt.Errorf("export: %w", err)
		}
		err = dr.ExportDevice(ctx, f, progress)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("export: close %s: %w", out, cerr)
		}
		if errors.Is(err, blockmap.ErrDeviceTooSmall) {
			return fmt.Errorf("%w (nothing was written: give a device at least as large as the disk)", err)
		}
		return err
	default:
		f, err := os.OpenFile(out, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		err = dr.ExportStream(ctx, f, progress)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("export: close %s: %w", out, cerr)
		}
		return err
	}
}

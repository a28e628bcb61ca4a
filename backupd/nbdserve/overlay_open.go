package nbdserve

import (
	"errors"
	"fmt"
	"io"
)

// Overlay is a writable view of a Source for servers other than NBD (the
// NFS export of backupd/nfsserve): reads of written 4 KiB blocks come from
// a sparse overlay file, the rest from the source; writes go to the
// overlay file only. It is the same overlay an NBD export with
// Options.Overlay uses, so either server can continue the other's file.
type Overlay struct{ o *overlay }

// OpenOverlay opens (creating) the overlay file at path over src; base is
// as Options.OverlayBase (an overlay written over another base is refused
// with ErrOverlayBase, one of another size with ErrOverlaySize).
func OpenOverlay(path string, src Source, base string) (*Overlay, error) {
	o, err := openOverlay(path, src, src.Size(), base)
	if err != nil {
		return nil, err
	}
	return &Overlay{o: o}, nil
}

// Size is the disk's size in bytes.
func (v *Overlay) Size() int64 { return v.o.size }

// ReadAt reads the disk as written so far. Reads past the end are short
// with io.EOF.
func (v *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if off >= v.o.size {
		return 0, io.EOF
	}
	short := false
	if off+int64(len(p)) > v.o.size {
		p, short = p[:v.o.size-off], true
	}
	clear(p)
	n, err := v.o.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// WriteAt writes p at off into the overlay; writes past the disk's end are
// refused with ErrPastEnd (a disk does not grow).
func (v *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > v.o.size {
		return 0, fmt.Errorf("write of %d bytes at %d: %w (the disk has %d bytes)", len(p), off, ErrPastEnd, v.o.size)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := v.o.WriteAt(p, int64(len(p)), off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ErrPastEnd means a write reached past the end of the disk.
var ErrPastEnd = errors.New("write past the end of the disk")

// Written reports whether the overlay holds any written block.
func (v *Overlay) Written() bool {
	v.o.mu.RLock()
	defer v.o.mu.RUnlock()
	for _, w := range v.o.written {
		if w != 0 {
			return true
		}
	}
	return false
}

// Sync flushes the overlay file to stable storage.
func (v *Overlay) Sync() error { return v.o.Sync() }

// Close syncs and closes the overlay file.
func (v *Overlay) Close() error {
	err := v.o.Sync()
	if cerr := v.o.Close(); err == nil {
		err = cerr
	}
	return err
}

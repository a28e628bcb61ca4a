package partinfo

import (
	"fmt"
	"io"
)

// Region is a named stretch of a reader: a whole disk or a partition
// that volume managers (LVM, MD) look at. Reads are bounded by Size.
type Region struct {
	Name string // for messages, e.g. "sda/p2"
	R    io.ReaderAt
	Off  int64
	Size int64
}

// ReadAt reads the region's bytes; io.EOF past its end.
func (d Region) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", d.Name, off)
	}
	if off >= d.Size {
		return 0, io.EOF
	}
	short := false
	if max := d.Size - off; int64(len(p)) > max {
		p, short = p[:max], true
	}
	n, err := d.R.ReadAt(p, d.Off+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// ReadFull reads len(p) bytes at off; a short read is an error
// (io.ErrUnexpectedEOF when the reader gave none).
func ReadFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

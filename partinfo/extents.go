package partinfo

import (
	"errors"
	"fmt"
)

// ErrNoExtents is returned (wrapped) by Extents when a file's bytes are
// not simply the bytes of its extents as stored: data kept inside the
// inode (ext4 inline data, an XFS local fork), data blocks that a journal
// or log replayed in memory overlays, or a reader that does not tell
// extents.
var ErrNoExtents = errors.New("the file's bytes are not read from extents of the volume")

// Extent is one run of a regular file's data: Length bytes of the file
// starting at file offset Logical are the bytes at Physical of the
// io.ReaderAt the filesystem was opened on (partition offset included).
// An Unwritten extent is allocated but reads as zeros. File offsets no
// extent covers are holes. Extents cover whole filesystem blocks, so the
// last one may reach past the file's size.
type Extent struct {
	Logical   int64
	Physical  int64
	Length    int64
	Unwritten bool
}

// ExtentReader is the optional interface of a Filesystem that tells
// where a regular file's bytes lie (ext2/3/4 and XFS). Extents returns
// the extents sorted by Logical, or an error wrapping ErrNoExtents when
// the file's bytes are not those of its extents as stored.
type ExtentReader interface {
	Extents(ino uint64) ([]Extent, error)
}

// Extents returns the extents of regular file ino of f, or an error
// wrapping ErrNoExtents when f's reader does not tell them.
func Extents(f Filesystem, ino uint64) ([]Extent, error) {
	if x, ok := f.(ExtentReader); ok {
		return x.Extents(ino)
	}
	return nil, fmt.Errorf("%s: %w", f.Info().Type, ErrNoExtents)
}

// Extents lists a file's extents when the wrapped reader tells them
// (ExtentReader); otherwise an error wrapping ErrNoExtents.
func (s *safeFS) Extents(ino uint64) (x []Extent, err error) {
	defer catch(s.name, "extents", &err)
	r, ok := s.fs.(ExtentReader)
	if !ok {
		return nil, fmt.Errorf("%s: %w", s.name, ErrNoExtents)
	}
	return r.Extents(ino)
}

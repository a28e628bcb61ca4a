package xfs

import (
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

// Extents returns where regular file ino's bytes lie in the reader the
// filesystem was opened on (partinfo.ExtentReader). A local (inline)
// data fork and a log replayed in memory give an error wrapping
// partinfo.ErrNoExtents.
func (x *xfs) Extents(ino uint64) ([]partinfo.Extent, error) {
	in, err := x.regular(ino)
	if err != nil {
		return nil, err
	}
	if in.format == fmtLocal {
		return nil, fmt.Errorf("xfs: inode %d keeps its data in the inode: %w", ino, partinfo.ErrNoExtents)
	}
	if x.log != nil {
		return nil, fmt.Errorf("xfs: inode %d: log replayed in memory: %w", ino, partinfo.ErrNoExtents)
	}
	m, err := x.extentMap(in)
	if err != nil {
		return nil, err
	}
	out := make([]partinfo.Extent, 0, len(m))
	for _, e := range m {
		out = append(out, partinfo.Extent{Logical: x.blockByte(e.off), Physical: x.base + e.phys,
			Length: int64(e.count) << x.geo.blockLog, Unwritten: e.unwritten})
	}
	return out, nil
}

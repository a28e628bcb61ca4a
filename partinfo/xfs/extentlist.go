package xfs

import (
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/partinfo"
)

// Extents returns where regular file ino's bytes lie in the reader the
// filesystem was opened on (partinfo.ExtentReader). A local (inline)
// data fork, and data blocks that the log replayed in memory overlays,
// give an error wrapping partinfo.ErrNoExtents.
func (x *xfs) Extents(ino uint64) ([]partinfo.Extent, error) {
	in, err := x.regular(ino)
	if err != nil {
		return nil, err
	}
	if in.format == fmtLocal {
		return nil, fmt.Errorf("xfs: inode %d keeps its data in the inode: %w", ino, partinfo.ErrNoExtents)
	}
	m, err := x.extentMap(in)
	if err != nil {
		return nil, err
	}
	out := make([]partinfo.Extent, 0, len(m))
	for _, e := range m {
		if !e.unwritten && x.log != nil && x.log.covers(e.phys, int64(e.count)<<x.geo.blockLog) {
			return nil, fmt.Errorf("xfs: inode %d: the log replayed in memory holds some of its blocks: %w", ino, partinfo.ErrNoExtents)
		}
		out = append(out, partinfo.Extent{Logical: x.blockByte(e.off), Physical: x.base + e.phys,
			Length: int64(e.count) << x.geo.blockLog, Unwritten: e.unwritten})
	}
	return out, nil
}

// covers reports whether the overlay holds any sector of the partition
// bytes [off, off+n).
func (o *logOverlay) covers(off, n int64) bool {
	first, last := off/bbSize, (off+n-1)/bbSize
	i := sort.Search(len(o.sorted), func(i int) bool { return o.sorted[i] >= first })
	return i < len(o.sorted) && o.sorted[i] <= last
}

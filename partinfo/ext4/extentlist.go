package ext4

import (
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/partinfo"
)

// Extents returns where regular file ino's bytes lie in the reader the
// filesystem was opened on (partinfo.ExtentReader). Inline data, and
// data blocks that the journal replayed in memory overlays (data=journal,
// or a block reused by metadata), give an error wrapping
// partinfo.ErrNoExtents.
func (f *FS) Extents(ino uint64) ([]partinfo.Extent, error) {
	n, err := f.regular(ino)
	if err != nil {
		return nil, err
	}
	switch {
	case n.flags&flagEncrypt != 0:
		return nil, fmt.Errorf("inode %d is encrypted", n.ino)
	case n.flags&flagInlineData != 0:
		return nil, fmt.Errorf("inode %d keeps its data inline: %w", ino, partinfo.ErrNoExtents)
	}
	m, err := f.fileMapOf(n)
	if err != nil {
		return nil, err
	}
	bs := f.sb.blockSize
	out := make([]partinfo.Extent, 0, len(m.runs))
	for _, r := range m.runs {
		if !r.unwritten && f.journal != nil && f.journal.covers(r.physical, r.length) {
			return nil, fmt.Errorf("inode %d: the journal replayed in memory holds some of its blocks: %w", ino, partinfo.ErrNoExtents)
		}
		out = append(out, partinfo.Extent{Logical: int64(r.logical) * bs, Physical: f.off + int64(r.physical)*bs,
			Length: int64(r.length) * bs, Unwritten: r.unwritten})
	}
	return out, nil
}

// covers reports whether the overlay holds any of the blocks
// first..first+count-1.
func (o *overlay) covers(first, count uint64) bool {
	i := sort.Search(len(o.blocks), func(i int) bool { return o.blocks[i] >= first })
	return i < len(o.blocks) && o.blocks[i] < first+count
}

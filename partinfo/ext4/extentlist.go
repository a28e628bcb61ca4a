package ext4

import (
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

// Extents returns where regular file ino's bytes lie in the reader the
// filesystem was opened on (partinfo.ExtentReader). Inline data and a
// journal replayed in memory (which may overlay data blocks) give an
// error wrapping partinfo.ErrNoExtents.
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
	case f.journal != nil:
		return nil, fmt.Errorf("inode %d: journal replayed in memory: %w", ino, partinfo.ErrNoExtents)
	}
	m, err := f.fileMapOf(n)
	if err != nil {
		return nil, err
	}
	bs := f.sb.blockSize
	out := make([]partinfo.Extent, 0, len(m.runs))
	for _, r := range m.runs {
		out = append(out, partinfo.Extent{Logical: int64(r.logical) * bs, Physical: f.off + int64(r.physical)*bs,
			Length: int64(r.length) * bs, Unwritten: r.unwritten})
	}
	return out, nil
}

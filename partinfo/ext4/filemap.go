package ext4

import (
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/partinfo"
)

// run maps length logical blocks starting at logical to physical blocks
// starting at physical. Unwritten runs are allocated but read as zeros.
type run struct {
	logical   uint64
	length    uint64
	physical  uint64
	unwritten bool
}

// fileMap is the complete block map of one inode: runs sorted by logical
// block, non-overlapping; logical blocks not covered are holes.
type fileMap struct {
	runs []run
}

// appendRun adds r after the last run, merging it when it continues the
// previous run both logically and physically.
func (m *fileMap) appendRun(r run) error {
	if n := len(m.runs); n > 0 {
		last := &m.runs[n-1]
		if r.logical < last.logical+last.length {
			return fmt.Errorf("logical block %d overlaps or precedes the previous mapping: %w", r.logical, partinfo.ErrCorrupt)
		}
		if last.unwritten == r.unwritten && last.logical+last.length == r.logical && last.physical+last.length == r.physical {
			last.length += r.length
			return nil
		}
	}
	m.runs = append(m.runs, r)
	return nil
}

// find returns the index of the first run that ends after logical block lb.
func (m *fileMap) find(lb uint64) int {
	return sort.Search(len(m.runs), func(i int) bool {
		r := m.runs[i]
		return r.logical+r.length > lb
	})
}

// fileMapOf returns the (cached) block map of an inode that uses extents or
// an indirect block map.
func (f *FS) fileMapOf(n *inode) (*fileMap, error) {
	if m, ok := f.maps.Get(n.ino); ok {
		return m, nil
	}
	var (
		m   *fileMap
		err error
	)
	if n.flags&flagExtents != 0 {
		m, err = f.loadExtentMap(n)
	} else {
		m, err = f.loadIndirectMap(n)
	}
	if err != nil {
		return nil, fmt.Errorf("block map of inode %d: %w", n.ino, err)
	}
	f.maps.Add(n.ino, m, len(m.runs)+1)
	return m, nil
}

// checkPhysical validates that blocks [p, p+count) lie inside the filesystem.
func (f *FS) checkPhysical(p, count uint64) error {
	if p == 0 || p >= f.sb.blocksCount || count > f.sb.blocksCount-p {
		return fmt.Errorf("blocks %d+%d outside the filesystem (%d blocks): %w", p, count, f.sb.blocksCount, partinfo.ErrCorrupt)
	}
	return nil
}

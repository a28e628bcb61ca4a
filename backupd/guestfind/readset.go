package guestfind

import (
	"sort"
	"sync"
)

// recReader is one disk of a point read through a recorder: every block
// a reader touches goes into the read set.
type recReader struct {
	dr  Disk
	bs  int64
	set *readSet
	id  int // index of the disk in the point
}

func (r *recReader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) > 0 && off >= 0 {
		r.set.add(r.id, off/r.bs, (off+int64(len(p))-1)/r.bs)
	}
	return r.dr.ReadAt(p, off)
}

// readSet is the blocks of each disk of a point that a piece of work
// read, safe for concurrent use. Blocks are kept as ranges: a file read
// from start to end is one range per extent, not one entry per block.
type readSet struct {
	mu     sync.Mutex
	ranges [][]blockRange // per disk index, in the order they were read
}

// blockRange is the blocks first..last (inclusive).
type blockRange struct{ first, last int64 }

func newReadSet(disks int) *readSet {
	return &readSet{ranges: make([][]blockRange, disks)}
}

func (s *readSet) add(disk int, first, last int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.ranges[disk]
	if n := len(rs); n > 0 && first <= rs[n-1].last+1 && last >= rs[n-1].first-1 {
		// touches the last range read: grow it
		rs[n-1].first, rs[n-1].last = min(rs[n-1].first, first), max(rs[n-1].last, last)
		return
	}
	s.ranges[disk] = append(rs, blockRange{first, last})
}

// genMap answers which generation holds a block of one disk of a point
// (0 for a hole or a zero block).
type genMap struct {
	id    uint32
	size  int64
	first []int64
	n     []int64
	gen   []uint32
}

// newGenMap is the block map of disk d (id: its DiskInfo.ID), or nil when
// the disk does not tell block identities (a remote disk).
func newGenMap(d Disk, id uint32) *genMap {
	dr, ok := d.(dataRunner)
	if !ok {
		return nil
	}
	m := &genMap{id: id, size: d.Size()}
	dr.DataRuns(func(first, n int64, gen uint32) bool {
		m.first = append(m.first, first)
		m.n = append(m.n, n)
		m.gen = append(m.gen, gen)
		return true
	})
	return m
}

func (m *genMap) at(b int64) uint32 {
	i := sort.Search(len(m.first), func(i int) bool { return m.first[i] > b }) - 1
	if i < 0 || b >= m.first[i]+m.n[i] {
		return 0
	}
	return m.gen[i]
}

// sameBytes reports whether every block of set has the same generation
// in the disks of a and b: then every read recorded in set returns the
// same bytes in both points. The disks must be the same ones (name, id,
// size, in order), as the work walked all of them.
func sameBytes(set *readSet, names []string, a, b []*genMap, bnames []string) bool {
	if set == nil || len(a) != len(b) || len(names) != len(bnames) {
		return false
	}
	for i := range a {
		if a[i] == nil || b[i] == nil || names[i] != bnames[i] || a[i].id != b[i].id || a[i].size != b[i].size {
			return false
		}
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	for i, rs := range set.ranges {
		for _, r := range rs {
			for blk := r.first; blk <= r.last; blk++ {
				if a[i].at(blk) != b[i].at(blk) {
					return false
				}
			}
		}
	}
	return true
}

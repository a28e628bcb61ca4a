package xfs

import (
	"encoding/binary"
	"fmt"
	"sort"
)

const (
	bmapMagicV5 = 0x424d4133 // "BMA3"
	bmapMagicV4 = 0x424d4150 // "BMAP"

	bmbtHdrV5 = 72
	bmbtHdrV4 = 24

	maxBtreeLevels = 12 // far above the deepest bmbt a 64-bit file can need
)

// extent maps count file blocks starting at file block off to the
// partition byte offset phys. Unwritten extents read as zeros.
type extent struct {
	off       uint64
	count     uint64
	phys      int64
	unwritten bool
}

func (e extent) end() uint64 { return e.off + e.count }

// decodeExtent unpacks one 128-bit bmbt record.
func decodeExtent(rec []byte) (off, fsb, count uint64, unwritten bool) {
	l0 := binary.BigEndian.Uint64(rec)
	l1 := binary.BigEndian.Uint64(rec[8:])
	unwritten = l0>>63 != 0
	off = (l0 & (1<<63 - 1)) >> 9
	fsb = (l0&(1<<9-1))<<43 | l1>>21
	count = l1 & (1<<21 - 1)
	return
}

// extentMap returns the sorted, validated extent list of a data fork in
// extents or btree format, cached per inode.
func (x *xfs) extentMap(in *inode) ([]extent, error) {
	if m, ok := x.extents.Get(in.ino); ok {
		return m, nil
	}
	m, err := x.forkExtents(in)
	if err != nil {
		return nil, err
	}
	x.extents.Add(in.ino, m, len(m))
	return m, nil
}

// forkExtents decodes the extent map of in.fork (format in.format,
// in.nextents records) without caching.
func (x *xfs) forkExtents(in *inode) ([]extent, error) {
	var m []extent
	var err error
	switch in.format {
	case fmtExtents:
		if in.nextents > uint64(len(in.fork)/16) {
			return nil, corruptf("inode %d: %d extents do not fit the fork", in.ino, in.nextents)
		}
		m, err = x.appendRecords(in, nil, in.fork, int(in.nextents))
	case fmtBtree:
		m, err = x.walkBmbtRoot(in)
	default:
		return nil, corruptf("inode %d: data fork format %d has no extent map", in.ino, in.format)
	}
	if err != nil {
		return nil, err
	}
	if uint64(len(m)) != in.nextents {
		return nil, corruptf("inode %d: found %d extents, inode records %d", in.ino, len(m), in.nextents)
	}
	return m, nil
}

// appendRecords decodes n extent records from recs onto m, checking
// order, overlap and placement.
func (x *xfs) appendRecords(in *inode, m []extent, recs []byte, n int) ([]extent, error) {
	if n*16 > len(recs) {
		return nil, corruptf("inode %d: %d records overrun their block", in.ino, n)
	}
	for i := 0; i < n; i++ {
		off, fsb, count, unwritten := decodeExtent(recs[i*16:])
		if !x.geo.extentOK(fsb, count) {
			return nil, corruptf("inode %d: extent at block %d (%d blocks) outside the filesystem", in.ino, fsb, count)
		}
		if len(m) > 0 && off < m[len(m)-1].end() {
			return nil, corruptf("inode %d: extents overlap or are out of order at file block %d", in.ino, off)
		}
		phys, _ := x.geo.fsbToByte(fsb)
		m = append(m, extent{off: off, count: count, phys: phys, unwritten: unwritten})
	}
	return m, nil
}

// walkBmbtRoot reads a btree-format data fork: the root lives in the inode.
func (x *xfs) walkBmbtRoot(in *inode) ([]extent, error) {
	be := binary.BigEndian
	if len(in.fork) < 4+16 {
		return nil, corruptf("inode %d: bmbt root too small", in.ino)
	}
	level := int(be.Uint16(in.fork))
	numrecs := int(be.Uint16(in.fork[2:]))
	maxrecs := (len(in.fork) - 4) / 16
	if level < 1 || level > maxBtreeLevels || numrecs < 1 || numrecs > maxrecs {
		return nil, corruptf("inode %d: bmbt root level %d with %d records", in.ino, level, numrecs)
	}
	w := &bmbtWalk{x: x, in: in, budget: in.nblocks + 1}
	ptrs := in.fork[4+maxrecs*8:]
	for i := 0; i < numrecs; i++ {
		if err := w.visit(be.Uint64(ptrs[i*8:]), level-1); err != nil {
			return nil, err
		}
	}
	return w.m, nil
}

// bmbtWalk collects extents from a bmbt in key order, reading at most
// budget blocks so that a corrupt tree cannot make the walk explode.
type bmbtWalk struct {
	x      *xfs
	in     *inode
	m      []extent
	budget uint64
}

func (w *bmbtWalk) visit(fsb uint64, level int) error {
	x, in := w.x, w.in
	if w.budget == 0 {
		return corruptf("inode %d: bmbt has more blocks than the inode owns", in.ino)
	}
	w.budget--
	if uint64(len(w.m)) > in.nextents {
		return corruptf("inode %d: bmbt holds more than %d extents", in.ino, in.nextents)
	}
	phys, ok := x.geo.fsbToByte(fsb)
	if !ok {
		return corruptf("inode %d: bmbt block %d outside the filesystem", in.ino, fsb)
	}
	blk := make([]byte, x.geo.blockSize)
	if err := x.readRaw(blk, phys); err != nil {
		return fmt.Errorf("inode %d: read bmbt block %d: %w", in.ino, fsb, err)
	}
	be := binary.BigEndian
	hdr := bmbtHdrV4
	magic := uint32(bmapMagicV4)
	if x.sb.v5() {
		hdr, magic = bmbtHdrV5, bmapMagicV5
	}
	if be.Uint32(blk) != magic {
		return corruptf("inode %d: bmbt block %d: bad magic %#x", in.ino, fsb, be.Uint32(blk))
	}
	if x.sb.v5() {
		if !crcOK(blk, 64) {
			return corruptf("inode %d: bmbt block %d: CRC mismatch", in.ino, fsb)
		}
		if owner := be.Uint64(blk[56:]); owner != in.ino {
			return corruptf("inode %d: bmbt block %d owned by inode %d", in.ino, fsb, owner)
		}
	}
	gotLevel := int(be.Uint16(blk[4:]))
	numrecs := int(be.Uint16(blk[6:]))
	maxrecs := (len(blk) - hdr) / 16
	if gotLevel != level || numrecs < 1 || numrecs > maxrecs {
		return corruptf("inode %d: bmbt block %d: level %d (want %d), %d records", in.ino, fsb, gotLevel, level, numrecs)
	}
	if level == 0 {
		m, err := x.appendRecords(in, w.m, blk[hdr:], numrecs)
		w.m = m
		return err
	}
	ptrs := blk[hdr+maxrecs*8:]
	for i := 0; i < numrecs; i++ {
		if err := w.visit(be.Uint64(ptrs[i*8:]), level-1); err != nil {
			return err
		}
	}
	return nil
}

// findExtent returns the index of the first extent ending after file block fb.
func findExtent(m []extent, fb uint64) int {
	return sort.Search(len(m), func(i int) bool { return m[i].end() > fb })
}

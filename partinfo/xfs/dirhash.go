package xfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/bits"
	"sort"
)

const (
	leaf1MagicV5 = 0x3df1 // leaf block of a leaf-form directory
	leafNMagicV5 = 0x3dff // leaf block of a node-form directory
	nodeMagicV5  = 0x3ebe // dabtree interior node
	leaf1MagicV4 = 0xd2f1
	leafNMagicV4 = 0xd2ff
	nodeMagicV4  = 0xfebe

	daHdrV5 = 64 // blkinfo (56) + count, level/stale, pad
	daHdrV4 = 16 // blkinfo (12) + count, level/stale

	daMaxDepth = 5 // XFS_DA_NODE_MAXDEPTH

	versionBorgBit = 0x4000 // v4 ASCII case-insensitive names: another hash
)

// daHashname is XFS's directory name hash (xfs_da_hashname).
func daHashname(name []byte) uint32 {
	var h uint32
	for ; len(name) >= 4; name = name[4:] {
		h = uint32(name[0])<<21 ^ uint32(name[1])<<14 ^ uint32(name[2])<<7 ^ uint32(name[3]) ^ bits.RotateLeft32(h, 7*4)
	}
	switch len(name) {
	case 3:
		return uint32(name[0])<<14 ^ uint32(name[1])<<7 ^ uint32(name[2]) ^ bits.RotateLeft32(h, 7*3)
	case 2:
		return uint32(name[0])<<7 ^ uint32(name[1]) ^ bits.RotateLeft32(h, 7*2)
	case 1:
		return uint32(name[0]) ^ bits.RotateLeft32(h, 7)
	}
	return h
}

// hashedLookupOK reports whether a directory can be searched through its
// hash index (leaf or node form, standard name hash).
func (x *xfs) hashedLookupOK(in *inode) bool {
	return (in.format == fmtExtents || in.format == fmtBtree) &&
		in.size > x.geo.dirBlkSize && x.sb.versionNum&versionBorgBit == 0
}

// lookupHashed finds name in a leaf or node directory by walking its hash
// index: a few block reads instead of parsing the whole directory.
func (x *xfs) lookupHashed(in *inode, name string) (uint64, error) {
	m, err := x.extentMap(in)
	if err != nil {
		return 0, err
	}
	h := daHashname([]byte(name))
	v5 := x.sb.v5()
	hdr := daHdrV4
	leaf1, leafN, node := uint16(leaf1MagicV4), uint16(leafNMagicV4), uint16(nodeMagicV4)
	if v5 {
		hdr = daHdrV5
		leaf1, leafN, node = leaf1MagicV5, leafNMagicV5, nodeMagicV5
	}
	buf := make([]byte, x.geo.dirBlkSize)
	be := binary.BigEndian
	fb := uint64(dirLeafOffset) >> x.geo.blockLog // the index root
	level := -1
	for depth := 0; ; depth++ {
		if depth > daMaxDepth {
			return 0, corruptf("directory inode %d: hash index deeper than %d", in.ino, daMaxDepth)
		}
		if err := x.readDaBlock(in, m, fb, buf); err != nil {
			return 0, err
		}
		magic := be.Uint16(buf[8:])
		if magic == leaf1 || magic == leafN {
			if level > 1 {
				return 0, corruptf("directory inode %d: leaf below node level %d", in.ino, level)
			}
			break
		}
		if magic != node {
			return 0, corruptf("directory inode %d: hash index block %d: bad magic %#x", in.ino, fb, magic)
		}
		count := int(be.Uint16(buf[hdr-8:]))
		lvl := int(be.Uint16(buf[hdr-6:]))
		if !v5 {
			count, lvl = int(be.Uint16(buf[12:])), int(be.Uint16(buf[14:]))
		}
		if count == 0 || hdr+count*8 > len(buf) || lvl < 1 || lvl > daMaxDepth || (level >= 0 && lvl != level-1) {
			return 0, corruptf("directory inode %d: node block %d: %d entries at level %d", in.ino, fb, count, lvl)
		}
		level = lvl
		// The first entry whose hash is >= h leads to the leaf holding h.
		i := sort.Search(count, func(i int) bool { return be.Uint32(buf[hdr+i*8:]) >= h })
		if i == count {
			return 0, fmt.Errorf("xfs: lookup %q: %w", name, fs.ErrNotExist)
		}
		fb = uint64(be.Uint32(buf[hdr+i*8+4:]))
	}
	// Scan the leaf (and its right siblings while the hash repeats).
	visited := map[uint64]bool{fb: true}
	for {
		var count int
		if v5 {
			count = int(be.Uint16(buf[56:]))
		} else {
			count = int(be.Uint16(buf[12:]))
		}
		if hdr+count*8 > len(buf) {
			return 0, corruptf("directory inode %d: leaf of %d entries overruns", in.ino, count)
		}
		i := sort.Search(count, func(i int) bool { return be.Uint32(buf[hdr+i*8:]) >= h })
		for ; i < count && be.Uint32(buf[hdr+i*8:]) == h; i++ {
			addr := be.Uint32(buf[hdr+i*8+4:])
			if addr == 0 { // stale entry
				continue
			}
			ino, ok, err := x.matchDataEntry(in, m, uint64(addr)*8, name)
			if err != nil || ok {
				return ino, err
			}
		}
		forw := uint64(be.Uint32(buf[0:]))
		if i < count || forw == 0 {
			break
		}
		if visited[forw] || uint64(len(visited)) > in.nblocks {
			return 0, corruptf("directory inode %d: leaf sibling chain loops at %d", in.ino, forw)
		}
		visited[forw] = true
		if err := x.readDaBlock(in, m, forw, buf); err != nil {
			return 0, err
		}
		if magic := be.Uint16(buf[8:]); magic != leafN {
			return 0, corruptf("directory inode %d: leaf sibling %d: bad magic %#x", in.ino, forw, magic)
		}
	}
	return 0, fmt.Errorf("xfs: lookup %q: %w", name, fs.ErrNotExist)
}

// readDaBlock reads the directory block at file block fb of the hash
// index and checks its v5 CRC and owner.
func (x *xfs) readDaBlock(in *inode, m []extent, fb uint64, buf []byte) error {
	if err := x.readFileBlocks(in, m, fb, buf); err != nil {
		return err
	}
	if x.sb.v5() {
		if !crcOK(buf, 12) {
			return corruptf("directory inode %d: hash index block %d: CRC mismatch", in.ino, fb)
		}
		if owner := binary.BigEndian.Uint64(buf[48:]); owner != in.ino {
			return corruptf("directory inode %d: hash index block %d owned by inode %d", in.ino, fb, owner)
		}
	}
	return nil
}

// matchDataEntry checks whether the data entry at byte offset off of the
// directory's data section carries name.
func (x *xfs) matchDataEntry(in *inode, m []extent, off uint64, name string) (uint64, bool, error) {
	dbs := uint64(x.geo.dirBlkSize)
	db := off / dbs * x.geo.dirBlkFsb
	if db >= uint64(dirLeafOffset)>>x.geo.blockLog {
		return 0, false, corruptf("directory inode %d: leaf points beyond the data section", in.ino)
	}
	buf := make([]byte, dbs)
	if err := x.readFileBlocks(in, m, db, buf); err != nil {
		return 0, false, err
	}
	// Validates magic, CRC and owner, and that the entry lies in the block.
	if _, err := x.parseDataBlock(in, db, buf, nil); err != nil {
		return 0, false, err
	}
	pos := int(off % dbs)
	if pos+9 > len(buf) {
		return 0, false, corruptf("directory inode %d: leaf points past its data block", in.ino)
	}
	namelen := int(buf[pos+8])
	if pos+9+namelen > len(buf) {
		return 0, false, corruptf("directory inode %d: entry at %d overruns", in.ino, off)
	}
	if !bytes.Equal(buf[pos+9:pos+9+namelen], []byte(name)) {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(buf[pos:]), true, nil
}

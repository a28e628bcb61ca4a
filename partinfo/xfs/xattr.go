package xfs

import (
	"encoding/binary"
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

// Attribute fork structures: shortform (in the inode), leaf and da-node
// blocks, remote value blocks.
const (
	attrLeafMagicV4 = 0xfbee
	attrLeafMagicV5 = 0x3bee
	daNodeMagicV4   = 0xfebe
	daNodeMagicV5   = 0x3ebe
	attrRmtMagic    = 0x5841524d // "XARM"

	attrLeafHdrV4 = 32
	attrLeafHdrV5 = 80
	daNodeHdrV4   = 16
	daNodeHdrV5   = 64
	attrRmtHdr    = 56

	// Entry flags: namespace and state.
	attrFlagLocal      = 0x01
	attrFlagRoot       = 0x02 // trusted.
	attrFlagSecure     = 0x04 // security.
	attrFlagParent     = 0x08 // parent pointers: private, never listed
	attrFlagIncomplete = 0x80

	// maxAttrValue is the kernel's XATTR_SIZE_MAX.
	maxAttrValue = 65536
	// aclEntrySize is one on-disk xfs_acl_entry (tag, id, perm, pad).
	aclEntrySize = 12

	sgiACLFile    = "SGI_ACL_FILE"
	sgiACLDefault = "SGI_ACL_DEFAULT"
)

// rawAttr is one attribute as stored: namespace flags, name and either
// its value or where its remote value lives.
type rawAttr struct {
	flags     byte
	name      string
	value     []byte
	remote    bool
	remoteBlk uint32
	remoteLen int
}

// parseShortform decodes a shortform attribute fork.
func parseShortform(fork []byte) ([]rawAttr, error) {
	if len(fork) < 4 {
		return nil, corruptf("shortform attribute fork of %d bytes", len(fork))
	}
	total := int(binary.BigEndian.Uint16(fork))
	count := int(fork[2])
	if total < 4 || total > len(fork) {
		return nil, corruptf("shortform attribute size %d outside 4..%d", total, len(fork))
	}
	out := make([]rawAttr, 0, count)
	pos := 4
	for i := 0; i < count; i++ {
		if pos+3 > total {
			return nil, corruptf("shortform attribute %d overruns the fork", i)
		}
		nl, vl, flags := int(fork[pos]), int(fork[pos+1]), fork[pos+2]
		end := pos + 3 + nl + vl
		if nl == 0 || end > total {
			return nil, corruptf("shortform attribute %d (name %d, value %d bytes) overruns the fork", i, nl, vl)
		}
		out = append(out, rawAttr{flags: flags, name: string(fork[pos+3 : pos+3+nl]),
			value: append([]byte{}, fork[pos+3+nl:end]...)})
		pos = end
	}
	return out, nil
}

// daHeader checks the common block header of a leaf or node block and
// returns its magic and forward sibling.
func (x *xfs) daHeader(blk []byte, ino uint64, want ...uint16) (uint16, uint32, error) {
	be := binary.BigEndian
	if len(blk) < daNodeHdrV5 {
		return 0, 0, corruptf("inode %d: attribute block too small", ino)
	}
	magic := be.Uint16(blk[8:])
	ok := false
	for _, w := range want {
		ok = ok || magic == w
	}
	if !ok {
		return 0, 0, corruptf("inode %d: attribute block magic %#x", ino, magic)
	}
	if x.sb.v5() {
		if !crcOK(blk, 12) {
			return 0, 0, corruptf("inode %d: attribute block CRC mismatch", ino)
		}
		if owner := be.Uint64(blk[48:]); owner != ino {
			return 0, 0, corruptf("inode %d: attribute block owned by inode %d", ino, owner)
		}
	}
	return magic, be.Uint32(blk), nil
}

// parseAttrLeaf decodes the entries of one attribute leaf block.
func parseAttrLeaf(blk []byte, v5 bool) ([]rawAttr, error) {
	be := binary.BigEndian
	hdr, countOff := attrLeafHdrV4, 12
	if v5 {
		hdr, countOff = attrLeafHdrV5, 56
	}
	if len(blk) < hdr {
		return nil, corruptf("attribute leaf block too small")
	}
	count := int(be.Uint16(blk[countOff:]))
	if hdr+count*8 > len(blk) {
		return nil, corruptf("attribute leaf holds %d entries, room for %d", count, (len(blk)-hdr)/8)
	}
	out := make([]rawAttr, 0, count)
	for i := 0; i < count; i++ {
		ent := blk[hdr+i*8:]
		idx := int(be.Uint16(ent[4:]))
		flags := ent[6]
		if flags&attrFlagIncomplete != 0 {
			continue
		}
		if flags&attrFlagLocal != 0 {
			if idx+3 > len(blk) {
				return nil, corruptf("attribute leaf entry %d at %d outside the block", i, idx)
			}
			vl, nl := int(be.Uint16(blk[idx:])), int(blk[idx+2])
			end := idx + 3 + nl + vl
			if nl == 0 || end > len(blk) {
				return nil, corruptf("attribute leaf entry %d overruns the block", i)
			}
			out = append(out, rawAttr{flags: flags, name: string(blk[idx+3 : idx+3+nl]),
				value: append([]byte{}, blk[idx+3+nl:end]...)})
			continue
		}
		if idx+9 > len(blk) {
			return nil, corruptf("attribute leaf entry %d at %d outside the block", i, idx)
		}
		vblk, vl, nl := be.Uint32(blk[idx:]), int(be.Uint32(blk[idx+4:])), int(blk[idx+8])
		if nl == 0 || idx+9+nl > len(blk) {
			return nil, corruptf("attribute leaf entry %d overruns the block", i)
		}
		if vl > maxAttrValue {
			return nil, corruptf("attribute leaf entry %d: remote value of %d bytes", i, vl)
		}
		out = append(out, rawAttr{flags: flags, name: string(blk[idx+9 : idx+9+nl]),
			remote: true, remoteBlk: vblk, remoteLen: vl})
	}
	return out, nil
}

// attrFork is an inode's extent-mapped attribute fork.
type attrFork struct {
	x  *xfs
	in *inode
	m  []extent
}

// block reads logical attribute block lb.
func (a *attrFork) block(lb uint64) ([]byte, error) {
	i := findExtent(a.m, lb)
	if i >= len(a.m) || a.m[i].off > lb {
		return nil, corruptf("inode %d: attribute block %d is not mapped", a.in.ino, lb)
	}
	e := a.m[i]
	blk := make([]byte, a.x.geo.blockSize)
	if err := a.x.readRaw(blk, e.phys+int64(lb-e.off)<<a.x.geo.blockLog); err != nil {
		return nil, fmt.Errorf("xfs: inode %d attribute block %d: %w", a.in.ino, lb, err)
	}
	return blk, nil
}

// list walks from block 0 down the leftmost path of the da-btree to the
// first leaf, then along the leaves' forward links, as the kernel lists.
func (a *attrFork) list() ([]rawAttr, error) {
	v5 := a.x.sb.v5()
	leafMagic, nodeMagic, nodeHdr, countOff := uint16(attrLeafMagicV4), uint16(daNodeMagicV4), daNodeHdrV4, 12
	if v5 {
		leafMagic, nodeMagic, nodeHdr, countOff = attrLeafMagicV5, daNodeMagicV5, daNodeHdrV5, 56
	}
	budget := 0
	for _, e := range a.m {
		budget += int(min(e.count, 1<<20))
	}
	lb := uint64(0)
	var out []rawAttr
	for depth := 0; ; depth++ {
		if depth > maxBtreeLevels {
			return nil, corruptf("inode %d: attribute tree deeper than its blocks", a.in.ino)
		}
		blk, err := a.block(lb)
		if err != nil {
			return nil, err
		}
		magic, _, err := a.x.daHeader(blk, a.in.ino, leafMagic, nodeMagic)
		if err != nil {
			return nil, err
		}
		if magic == leafMagic {
			break
		}
		count := int(binary.BigEndian.Uint16(blk[countOff:]))
		if count < 1 || nodeHdr+count*8 > len(blk) {
			return nil, corruptf("inode %d: attribute node with %d entries", a.in.ino, count)
		}
		lb = uint64(binary.BigEndian.Uint32(blk[nodeHdr+4:]))
	}
	seen := map[uint64]bool{}
	for {
		if budget--; budget < 0 || seen[lb] {
			return nil, corruptf("inode %d: attribute leaf chain loops", a.in.ino)
		}
		seen[lb] = true
		blk, err := a.block(lb)
		if err != nil {
			return nil, err
		}
		_, forw, err := a.x.daHeader(blk, a.in.ino, leafMagic)
		if err != nil {
			return nil, err
		}
		ents, err := parseAttrLeaf(blk, v5)
		if err != nil {
			return nil, fmt.Errorf("inode %d attribute block %d: %w", a.in.ino, lb, err)
		}
		out = append(out, ents...)
		if forw == 0 {
			return out, nil
		}
		lb = uint64(forw)
	}
}

// remoteValue reads a value kept in its own attribute blocks.
func (a *attrFork) remoteValue(r rawAttr) ([]byte, error) {
	per := int(a.x.geo.blockSize)
	if a.x.sb.v5() {
		per -= attrRmtHdr
	}
	out := make([]byte, 0, r.remoteLen)
	be := binary.BigEndian
	for lb := uint64(r.remoteBlk); len(out) < r.remoteLen; lb++ {
		blk, err := a.block(lb)
		if err != nil {
			return nil, err
		}
		n := min(per, r.remoteLen-len(out))
		if !a.x.sb.v5() {
			out = append(out, blk[:n]...)
			continue
		}
		if be.Uint32(blk) != attrRmtMagic || !crcOK(blk, 12) {
			return nil, corruptf("inode %d: remote attribute block %d: bad magic or CRC", a.in.ino, lb)
		}
		off, bytes, owner := int(be.Uint32(blk[4:])), int(be.Uint32(blk[8:])), be.Uint64(blk[32:])
		if owner != a.in.ino || off != len(out) || bytes != n {
			return nil, corruptf("inode %d: remote attribute block %d holds %d bytes at %d for inode %d, want %d at %d for %d",
				a.in.ino, lb, bytes, off, owner, n, len(out), a.in.ino)
		}
		out = append(out, blk[attrRmtHdr:attrRmtHdr+n]...)
	}
	return out, nil
}

// xfsACLToXattr converts an XFS on-disk ACL (big-endian count, then tag,
// id, perm entries) to the Linux xattr ACL format, as the kernel's
// xfs_get_acl and posix_acl_to_xattr do.
func xfsACLToXattr(v []byte) ([]byte, error) {
	be := binary.BigEndian
	if len(v) < 4 {
		return nil, corruptf("ACL of %d bytes", len(v))
	}
	n := int(be.Uint32(v))
	if n < 0 || n > (len(v)-4)/aclEntrySize || 4+n*aclEntrySize != len(v) {
		return nil, corruptf("ACL of %d bytes claims %d entries", len(v), n)
	}
	entries := make([]partinfo.ACLEntry, n)
	for i := range entries {
		e := v[4+i*aclEntrySize:]
		tag := be.Uint32(e)
		if tag > 0xffff || !partinfo.ValidACLTag(uint16(tag)) {
			return nil, corruptf("ACL tag %#x", tag)
		}
		entries[i] = partinfo.ACLEntry{Tag: uint16(tag), ID: be.Uint32(e[4:]), Perm: be.Uint16(e[8:])}
	}
	return partinfo.EncodeACL(entries), nil
}

// Xattrs lists inode ino's extended attributes as a kernel mount does:
// user., trusted. (ATTR_ROOT) and security. (ATTR_SECURE) names, and for
// trusted.SGI_ACL_FILE/DEFAULT also system.posix_acl_access/default with
// the ACL converted to the Linux xattr format.
func (x *xfs) Xattrs(ino uint64) (out []partinfo.Xattr, err error) {
	if v, ok := x.xattrs.Get(ino); ok {
		return v, nil
	}
	in, err := x.readInode(ino)
	if err != nil {
		return nil, err
	}
	out, err = x.decodeXattrs(in)
	if err != nil {
		return nil, err
	}
	cost := 1
	for _, a := range out {
		cost += len(a.Name) + len(a.Value)
	}
	x.xattrs.Add(ino, out, cost)
	return out, nil
}

func (x *xfs) decodeXattrs(in *inode) ([]partinfo.Xattr, error) {
	out := []partinfo.Xattr{}
	if in.afork == nil {
		return out, nil
	}
	var raws []rawAttr
	var fork *attrFork
	switch in.aformat {
	case fmtLocal:
		var err error
		if raws, err = parseShortform(in.afork); err != nil {
			return nil, fmt.Errorf("inode %d: %w", in.ino, err)
		}
	case fmtExtents, fmtBtree:
		if in.anextents == 0 {
			return out, nil
		}
		m, err := x.forkExtents(&inode{ino: in.ino, format: in.aformat, fork: in.afork, nextents: in.anextents, nblocks: in.nblocks})
		if err != nil {
			return nil, fmt.Errorf("attribute fork: %w", err)
		}
		fork = &attrFork{x: x, in: in, m: m}
		if raws, err = fork.list(); err != nil {
			return nil, err
		}
	default:
		return nil, corruptf("inode %d: attribute fork format %d", in.ino, in.aformat)
	}
	for _, r := range raws {
		if r.flags&attrFlagParent != 0 {
			continue
		}
		v := r.value
		if r.remote {
			if fork == nil {
				return nil, corruptf("inode %d: remote attribute value in a shortform fork", in.ino)
			}
			var err error
			if v, err = fork.remoteValue(r); err != nil {
				return nil, err
			}
		}
		var prefix string
		switch {
		case r.flags&attrFlagRoot != 0:
			prefix = "trusted."
			acl := ""
			switch r.name {
			case sgiACLFile:
				acl = partinfo.XattrACLAccess
			case sgiACLDefault:
				acl = partinfo.XattrACLDefault
			}
			if acl != "" {
				conv, err := xfsACLToXattr(v)
				if err != nil {
					return nil, fmt.Errorf("inode %d %s: %w", in.ino, acl, err)
				}
				out = append(out, partinfo.Xattr{Name: acl, Value: conv})
			}
		case r.flags&attrFlagSecure != 0:
			prefix = "security."
		default:
			prefix = "user."
		}
		out = append(out, partinfo.Xattr{Name: prefix + r.name, Value: v})
	}
	return out, nil
}

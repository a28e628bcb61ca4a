package ext4

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	xattrMagic       = 0xEA020000
	xattrIndexSystem = 7
)

// inlineDataXattr returns the value of the in-inode "system.data" extended
// attribute, which holds the part of inline data beyond i_block's 60 bytes.
func inlineDataXattr(area []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(area) < 4 || le.Uint32(area) != xattrMagic {
		return nil, fmt.Errorf("inline data without in-inode xattrs: %w", partinfo.ErrCorrupt)
	}
	body := area[4:]
	for pos := 0; pos+16 <= len(body); {
		if le.Uint32(body[pos:]) == 0 {
			break // end of entries
		}
		nameLen := int(body[pos])
		index := body[pos+1]
		valueOff := int(le.Uint16(body[pos+2:]))
		valueInum := le.Uint32(body[pos+4:])
		valueSize := int(le.Uint32(body[pos+8:]))
		if pos+16+nameLen > len(body) {
			return nil, fmt.Errorf("xattr entry name overruns the inode: %w", partinfo.ErrCorrupt)
		}
		name := string(body[pos+16 : pos+16+nameLen])
		if index == xattrIndexSystem && name == "data" {
			if valueInum != 0 {
				return nil, fmt.Errorf("system.data stored in an EA inode: %w", partinfo.ErrCorrupt)
			}
			if valueSize == 0 {
				return nil, nil
			}
			if valueOff+valueSize > len(body) {
				return nil, fmt.Errorf("system.data value overruns the inode: %w", partinfo.ErrCorrupt)
			}
			return body[valueOff : valueOff+valueSize], nil
		}
		pos += (16 + nameLen + 3) &^ 3
	}
	return nil, fmt.Errorf("inline data flag set but no system.data xattr: %w", partinfo.ErrCorrupt)
}

// inlineContent returns the whole content of an inline-data inode.
func inlineContent(n *inode) ([]byte, error) {
	if n.size <= int64(len(n.iblock)) {
		return n.iblock[:n.size], nil
	}
	rest, err := inlineDataXattr(n.inlineArea)
	if err != nil {
		return nil, err
	}
	if int64(len(n.iblock)+len(rest)) < n.size {
		return nil, fmt.Errorf("inline data holds %d bytes, size is %d: %w", len(n.iblock)+len(rest), n.size, partinfo.ErrCorrupt)
	}
	out := make([]byte, 0, n.size)
	out = append(out, n.iblock[:]...)
	return append(out, rest[:n.size-int64(len(n.iblock))]...), nil
}

// Extended attribute name indexes (e_name_index) and the names a kernel
// mount shows for them. Indexes without a handler in the kernel (7,
// "system.data", and unknown ones) are not listed.
const (
	xattrIndexUser       = 1
	xattrIndexACLAccess  = 2
	xattrIndexACLDefault = 3
	xattrIndexTrusted    = 4
	xattrIndexSecurity   = 6
	xattrIndexHurd       = 10

	xattrBlockHeader = 32
	// maxXattrValue is the kernel's XATTR_SIZE_MAX.
	maxXattrValue = 65536

	flagEAInode = 0x200000
	// ext4 ACL on-disk version (EXT4_ACL_VERSION).
	ext4ACLVersion = 1
)

// xattrEntry is one decoded ext4 xattr entry before its value is fetched.
type xattrEntry struct {
	index     byte
	name      string
	valueOff  int
	valueInum uint32
	valueSize int
}

// parseXattrEntries decodes the entry table that starts at region[start:];
// value offsets are checked later against the region they point into.
func parseXattrEntries(region []byte, start int) ([]xattrEntry, error) {
	le := binary.LittleEndian
	var out []xattrEntry
	for pos := start; ; {
		if pos+4 > len(region) {
			if pos == len(region) {
				return out, nil // entries filled the area exactly
			}
			return nil, fmt.Errorf("xattr entry table runs off its area: %w", partinfo.ErrCorrupt)
		}
		if le.Uint32(region[pos:]) == 0 {
			return out, nil
		}
		if pos+16 > len(region) {
			return nil, fmt.Errorf("xattr entry at %d overruns its area: %w", pos, partinfo.ErrCorrupt)
		}
		nameLen := int(region[pos])
		e := xattrEntry{
			index:     region[pos+1],
			valueOff:  int(le.Uint16(region[pos+2:])),
			valueInum: le.Uint32(region[pos+4:]),
			valueSize: int(le.Uint32(region[pos+8:])),
		}
		if nameLen == 0 && e.index != xattrIndexACLAccess && e.index != xattrIndexACLDefault {
			return nil, fmt.Errorf("xattr entry at %d has an empty name: %w", pos, partinfo.ErrCorrupt)
		}
		if pos+16+nameLen > len(region) {
			return nil, fmt.Errorf("xattr entry name at %d overruns its area: %w", pos, partinfo.ErrCorrupt)
		}
		if e.valueSize > maxXattrValue || e.valueSize < 0 {
			return nil, fmt.Errorf("xattr value of %d bytes (limit %d): %w", e.valueSize, maxXattrValue, partinfo.ErrCorrupt)
		}
		e.name = string(region[pos+16 : pos+16+nameLen])
		out = append(out, e)
		if len(out) > len(region)/16 {
			return nil, fmt.Errorf("xattr entry table loops: %w", partinfo.ErrCorrupt)
		}
		pos += (16 + nameLen + 3) &^ 3
	}
}

// fullName returns the name a kernel mount lists for an entry, or "" when
// the kernel does not list it.
func (e xattrEntry) fullName() string {
	switch e.index {
	case xattrIndexUser:
		return "user." + e.name
	case xattrIndexACLAccess:
		return partinfo.XattrACLAccess
	case xattrIndexACLDefault:
		return partinfo.XattrACLDefault
	case xattrIndexTrusted:
		return "trusted." + e.name
	case xattrIndexSecurity:
		return "security." + e.name
	case xattrIndexHurd:
		return "gnu." + e.name
	}
	return ""
}

// inlineValue returns an entry's value stored in region at base+valueOff.
func (e xattrEntry) inlineValue(region []byte, base int) ([]byte, error) {
	lo := base + e.valueOff
	if e.valueSize == 0 {
		return []byte{}, nil
	}
	if lo < 0 || lo+e.valueSize > len(region) {
		return nil, fmt.Errorf("xattr %q value (%d bytes at %d) overruns its area: %w", e.fullName(), e.valueSize, e.valueOff, partinfo.ErrCorrupt)
	}
	return append([]byte(nil), region[lo:lo+e.valueSize]...), nil
}

// ext4ACLToXattr converts an ACL in ext4's on-disk form (version 1; short
// entries for the owner, group, mask and other) to the Linux xattr form.
func ext4ACLToXattr(v []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(v) < 4 || le.Uint32(v) != ext4ACLVersion {
		return nil, fmt.Errorf("ACL header invalid: %w", partinfo.ErrCorrupt)
	}
	var entries []partinfo.ACLEntry
	for p := 4; p < len(v); {
		if p+4 > len(v) {
			return nil, fmt.Errorf("ACL entry truncated: %w", partinfo.ErrCorrupt)
		}
		e := partinfo.ACLEntry{Tag: le.Uint16(v[p:]), Perm: le.Uint16(v[p+2:])}
		if !partinfo.ValidACLTag(e.Tag) {
			return nil, fmt.Errorf("ACL tag %#x: %w", e.Tag, partinfo.ErrCorrupt)
		}
		p += 4
		if e.Tag == partinfo.ACLUser || e.Tag == partinfo.ACLGroup {
			if p+4 > len(v) {
				return nil, fmt.Errorf("ACL entry truncated: %w", partinfo.ErrCorrupt)
			}
			e.ID = le.Uint32(v[p:])
			p += 4
		}
		entries = append(entries, e)
	}
	return partinfo.EncodeACL(entries), nil
}

// Xattrs lists inode ino's extended attributes as a kernel mount does:
// those in the inode first, then those in the xattr block, values from EA
// inodes fetched, ACLs converted to the Linux xattr format.
func (f *FS) Xattrs(ino uint64) (out []partinfo.Xattr, err error) {
	n, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	out = []partinfo.Xattr{}
	le := binary.LittleEndian
	if len(n.inlineArea) >= 4 && le.Uint32(n.inlineArea) == xattrMagic {
		body := n.inlineArea[4:]
		es, err := parseXattrEntries(body, 0)
		if err != nil {
			return nil, fmt.Errorf("inode %d in-inode xattrs: %w", ino, err)
		}
		if out, err = f.appendXattrs(out, es, body, 0); err != nil {
			return nil, fmt.Errorf("inode %d: %w", ino, err)
		}
	}
	if n.fileACL != 0 {
		blk, err := f.xattrBlock(n.fileACL)
		if err != nil {
			return nil, fmt.Errorf("inode %d xattr block %d: %w", ino, n.fileACL, err)
		}
		es, err := parseXattrEntries(blk, xattrBlockHeader)
		if err != nil {
			return nil, fmt.Errorf("inode %d xattr block %d: %w", ino, n.fileACL, err)
		}
		if out, err = f.appendXattrs(out, es, blk, 0); err != nil {
			return nil, fmt.Errorf("inode %d xattr block %d: %w", ino, n.fileACL, err)
		}
	}
	return out, nil
}

// xattrBlock reads and checks an external xattr block.
func (f *FS) xattrBlock(nr uint64) ([]byte, error) {
	if err := f.checkPhysical(nr, 1); err != nil {
		return nil, err
	}
	blk := make([]byte, f.sb.blockSize)
	if err := f.readFull(blk, int64(nr)*f.sb.blockSize); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if le.Uint32(blk) != xattrMagic {
		return nil, fmt.Errorf("bad magic %#x: %w", le.Uint32(blk), partinfo.ErrCorrupt)
	}
	if le.Uint32(blk[8:]) != 1 {
		return nil, fmt.Errorf("xattr block spans %d blocks: %w", le.Uint32(blk[8:]), partinfo.ErrCorrupt)
	}
	if f.sb.hasMetadataCsum() {
		var nrb [8]byte
		le.PutUint64(nrb[:], nr)
		want := le.Uint32(blk[0x10:])
		c := append([]byte(nil), blk...)
		le.PutUint32(c[0x10:], 0)
		if got := crc32c(crc32c(f.sb.checksumSeed, nrb[:]), c); got != want {
			return nil, fmt.Errorf("checksum %#x, computed %#x: %w", want, got, partinfo.ErrCorrupt)
		}
	}
	return blk, nil
}

// appendXattrs fetches the values of the listed entries onto out.
func (f *FS) appendXattrs(out []partinfo.Xattr, es []xattrEntry, region []byte, base int) ([]partinfo.Xattr, error) {
	for _, e := range es {
		name := e.fullName()
		if name == "" {
			continue
		}
		var v []byte
		var err error
		if e.valueInum != 0 {
			v, err = f.eaInodeValue(e)
		} else {
			v, err = e.inlineValue(region, base)
		}
		if err != nil {
			return nil, err
		}
		if e.index == xattrIndexACLAccess || e.index == xattrIndexACLDefault {
			if v, err = ext4ACLToXattr(v); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		out = append(out, partinfo.Xattr{Name: name, Value: v})
	}
	return out, nil
}

// eaInodeValue reads a value stored in its own inode (the ea_inode feature).
func (f *FS) eaInodeValue(e xattrEntry) ([]byte, error) {
	if f.sb.incompat&incompatEAInode == 0 {
		return nil, fmt.Errorf("xattr %q in inode %d without the ea_inode feature: %w", e.fullName(), e.valueInum, partinfo.ErrCorrupt)
	}
	n, err := f.readInode(uint64(e.valueInum))
	if err != nil {
		return nil, fmt.Errorf("xattr %q value inode: %w", e.fullName(), err)
	}
	if n.flags&flagEAInode == 0 || n.typ() != modeReg {
		return nil, fmt.Errorf("xattr %q value inode %d is not an EA inode: %w", e.fullName(), e.valueInum, partinfo.ErrCorrupt)
	}
	if n.size != int64(e.valueSize) {
		return nil, fmt.Errorf("xattr %q value inode %d holds %d bytes, entry says %d: %w", e.fullName(), e.valueInum, n.size, e.valueSize, partinfo.ErrCorrupt)
	}
	v := make([]byte, e.valueSize)
	if m, err := f.readContent(n, v, 0); err != nil && !(err == io.EOF && m == len(v)) {
		return nil, fmt.Errorf("xattr %q value inode %d: %w", e.fullName(), e.valueInum, err)
	}
	return v, nil
}

package ntfs

import (
	"encoding/binary"
	"fmt"
)

// Security descriptors. NTFS 3.x keeps each distinct descriptor once in
// the $SDS stream of $Secure (record 9), found by the security_id of a
// file's $STANDARD_INFORMATION; NTFS 1.x files carry their own in a
// $SECURITY_DESCRIPTOR attribute. Both are in self-relative form.

// $SDS layout.
const (
	sdsBlock     = 256 << 10 // $SDS is written in 256 KiB blocks, each followed by its mirror copy
	sdsHeader    = 20        // hash, security_id, offset in $SDS, entry length
	sdHeaderSize = 20        // revision, sbz1, control, owner, group, sacl, dacl offsets
	seSelfRel    = 0x8000    // SE_SELF_RELATIVE control bit
)

// sdsEntry locates one descriptor in $SDS: its bytes after the entry header.
type sdsEntry struct {
	off int64
	n   int
}

// scanSDSBlock adds the entries of one primary $SDS block b, which lies
// at stream offset base, to idx (keeping the first entry of an id). A
// header that does not describe itself (offset field, length) ends the
// block: the rest is free space.
func scanSDSBlock(idx map[uint32]sdsEntry, b []byte, base int64) {
	le := binary.LittleEndian
	for pos := 0; pos+sdsHeader <= len(b); {
		id := le.Uint32(b[pos+4:])
		off := le.Uint64(b[pos+8:])
		n := int(le.Uint32(b[pos+16:]))
		if n < sdsHeader+sdHeaderSize || off != uint64(base)+uint64(pos) || n > len(b)-pos {
			return
		}
		if _, ok := idx[id]; !ok && id != 0 {
			idx[id] = sdsEntry{off: base + int64(pos) + sdsHeader, n: n - sdsHeader}
		}
		pos += (n + 15) &^ 15
	}
}

// sdSize returns the length of the self-relative security descriptor at
// the start of b the way ntfs-3g's ntfs_attr_size computes it (the end
// of its last owner/group SID or SACL/DACL), after checking that the
// header is self-relative and every part lies inside b.
func sdSize(b []byte) (int, error) {
	if len(b) < sdHeaderSize {
		return 0, fmt.Errorf("security descriptor of %d bytes is shorter than its header", len(b))
	}
	le := binary.LittleEndian
	if b[0] != 1 {
		return 0, fmt.Errorf("security descriptor revision %d (want 1)", b[0])
	}
	if le.Uint16(b[2:])&seSelfRel == 0 {
		return 0, fmt.Errorf("security descriptor is not self-relative")
	}
	owner, group := int64(le.Uint32(b[4:])), int64(le.Uint32(b[8:]))
	sacl, dacl := int64(le.Uint32(b[12:])), int64(le.Uint32(b[16:]))
	sidEnd := func(off int64) (int64, error) {
		if off+8 > int64(len(b)) {
			return 0, fmt.Errorf("SID at %d lies past the descriptor's %d bytes", off, len(b))
		}
		end := off + 8 + 4*int64(b[off+1])
		if end > int64(len(b)) {
			return 0, fmt.Errorf("SID at %d of %d bytes lies past the descriptor's %d bytes", off, end-off, len(b))
		}
		return end, nil
	}
	aclEnd := func(off int64) (int64, error) {
		if off+8 > int64(len(b)) {
			return 0, fmt.Errorf("ACL at %d lies past the descriptor's %d bytes", off, len(b))
		}
		end := off + int64(le.Uint16(b[off+2:]))
		if end < off+8 || end > int64(len(b)) {
			return 0, fmt.Errorf("ACL at %d of %d bytes does not fit the descriptor's %d bytes", off, end-off, len(b))
		}
		return end, nil
	}
	// The same order and comparisons as ntfs_attr_size, so the value
	// has ntfs-3g's length even for descriptors laid out unusually.
	size := int64(sdHeaderSize)
	if group >= size {
		end, err := sidEnd(group)
		if err != nil {
			return 0, err
		}
		size = max(size, end)
	}
	if owner >= size {
		end, err := sidEnd(owner)
		if err != nil {
			return 0, err
		}
		size = end
	}
	if sacl >= size {
		end, err := aclEnd(sacl)
		if err != nil {
			return 0, err
		}
		size = max(size, end)
	}
	if dacl >= size {
		end, err := aclEnd(dacl)
		if err != nil {
			return 0, err
		}
		size = max(size, end)
	}
	return int(size), nil
}

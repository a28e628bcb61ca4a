package ext4

import (
	"encoding/binary"
	"testing"
)

// FuzzXattrDecoders feeds arbitrary bytes to the xattr entry table decoder
// (as an in-inode area and as an xattr block) and to the ext4 ACL
// converter: no panic, and whatever decodes stays inside its bounds.
func FuzzXattrDecoders(f *testing.F) {
	le := binary.LittleEndian
	// One entry "user.a" = "xyz" with its value at the end of 64 bytes.
	table := make([]byte, 64)
	table[0], table[1] = 1, xattrIndexUser
	le.PutUint16(table[2:], 60)
	le.PutUint32(table[8:], 3)
	copy(table[16:], "a")
	copy(table[60:], "xyz")
	f.Add(table)
	block := append(make([]byte, xattrBlockHeader), table...)
	le.PutUint32(block, xattrMagic)
	f.Add(block)
	acl := []byte{1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 7, 0, 0xd2, 4, 0, 0, 4, 0, 4, 0, 0x10, 0, 7, 0, 0x20, 0, 4, 0}
	f.Add(acl)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, start := range []int{0, xattrBlockHeader} {
			if start > len(in) {
				continue
			}
			es, err := parseXattrEntries(in, start)
			if err != nil {
				continue
			}
			for _, e := range es {
				if e.valueSize < 0 || e.valueSize > maxXattrValue {
					t.Fatalf("entry %+v: value size outside 0..%d", e, maxXattrValue)
				}
				if v, err := e.inlineValue(in, 0); err == nil && len(v) != e.valueSize {
					t.Fatalf("entry %+v: value of %d bytes", e, len(v))
				}
			}
		}
		if out, err := ext4ACLToXattr(in); err == nil {
			if len(out) < 4 || (len(out)-4)%8 != 0 || le.Uint32(out) != 2 {
				t.Fatalf("ACL converted to %x", out)
			}
		}
	})
}

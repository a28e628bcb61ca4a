package xfs

import (
	"encoding/binary"
	"testing"
)

// FuzzXattrDecoders feeds arbitrary bytes to the shortform and leaf
// attribute decoders (v4 and v5 layouts) and to the XFS ACL converter:
// no panic, names never empty, values within the kernel's limit.
func FuzzXattrDecoders(f *testing.F) {
	be := binary.BigEndian
	sf := []byte{0, 4 + 3 + 1 + 3, 1, 0, 1, 3, attrFlagRoot, 'a', 'x', 'y', 'z'}
	f.Add(sf)
	for _, hdr := range []int{attrLeafHdrV4, attrLeafHdrV5} {
		leaf := make([]byte, 512)
		countOff := 12
		if hdr == attrLeafHdrV5 {
			countOff = 56
		}
		be.PutUint16(leaf[countOff:], 2)
		// A local entry and a remote one.
		be.PutUint16(leaf[hdr+4:], 400)
		leaf[hdr+6] = attrFlagLocal
		be.PutUint16(leaf[hdr+8+4:], 450)
		be.PutUint16(leaf[400:], 3)
		leaf[402] = 1
		copy(leaf[403:], "nabc")
		be.PutUint32(leaf[450:], 7)
		be.PutUint32(leaf[454:], 5000)
		leaf[458] = 2
		copy(leaf[459:], "rr")
		f.Add(leaf)
	}
	acl := make([]byte, 4+2*aclEntrySize)
	be.PutUint32(acl, 2)
	be.PutUint32(acl[4:], 1)
	be.PutUint16(acl[12:], 7)
	be.PutUint32(acl[16:], 2)
	be.PutUint32(acl[20:], 1000)
	be.PutUint16(acl[24:], 5)
	f.Add(acl)
	f.Fuzz(func(t *testing.T, in []byte) {
		check := func(as []rawAttr) {
			for _, a := range as {
				if a.name == "" || len(a.value) > maxAttrValue || a.remoteLen > maxAttrValue {
					t.Fatalf("decoded %+v", a)
				}
			}
		}
		if as, err := parseShortform(in); err == nil {
			check(as)
		}
		for _, v5 := range []bool{false, true} {
			if as, err := parseAttrLeaf(in, v5); err == nil {
				check(as)
			}
		}
		if out, err := xfsACLToXattr(in); err == nil {
			if len(out) < 4 || (len(out)-4)%8 != 0 {
				t.Fatalf("ACL converted to %x", out)
			}
		}
	})
}

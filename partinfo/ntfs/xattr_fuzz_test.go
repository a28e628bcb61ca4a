package ntfs

import (
	"encoding/binary"
	"testing"
)

// FuzzNTFSSecurityAndStreamNames feeds arbitrary bytes to the $SDS block
// scanner, the security descriptor sizer and the stream name decoder:
// none may panic, every indexed entry lies inside the block, a sized
// descriptor fits its bytes, and a decoded name is non-empty.
func FuzzNTFSSecurityAndStreamNames(f *testing.F) {
	sd := []byte{1, 0, 0x04, 0x80, 20, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 44, 0, 0, 0,
		1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0, // owner S-1-5-18
		1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0, // group S-1-5-18
		2, 0, 8, 0, 0, 0, 0, 0} // empty DACL
	entry := make([]byte, sdsHeader)
	binary.LittleEndian.PutUint32(entry[4:], 0x100)
	binary.LittleEndian.PutUint32(entry[16:], uint32(sdsHeader+len(sd)))
	entry = append(entry, sd...)
	f.Add(entry)
	f.Add(sd)
	f.Add([]byte("Z\x00o\x00n\x00e\x00"))
	f.Add([]byte{0x00, 0xD8, 0x41, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx := map[uint32]sdsEntry{}
		scanSDSBlock(idx, b, 0)
		for id, e := range idx {
			if e.off < sdsHeader || e.n < sdHeaderSize || e.off+int64(e.n) > int64(len(b)) {
				t.Fatalf("security id %d: entry at %d of %d bytes outside the %d-byte block", id, e.off, e.n, len(b))
			}
			if n, err := sdSize(b[e.off : e.off+int64(e.n)]); err == nil && (n < sdHeaderSize || n > e.n) {
				t.Fatalf("descriptor size %d outside 20..%d", n, e.n)
			}
		}
		if n, err := sdSize(b); err == nil && (n < sdHeaderSize || n > len(b)) {
			t.Fatalf("descriptor size %d outside 20..%d", n, len(b))
		}
		if name, ok := decodeStreamName(b); ok && name == "" {
			t.Fatalf("decoded an empty stream name from %x", b)
		}
	})
}

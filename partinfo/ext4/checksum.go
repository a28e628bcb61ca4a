package ext4

import "hash/crc32"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's raw crc32c_le(seed, data): no inversion on input
// or output. Go's crc32.Update inverts both, hence the two complements.
func crc32c(seed uint32, data []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, data)
}

// le32bytes returns v as 4 little-endian bytes (checksum input).
func le32bytes(v uint32) []byte {
	return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

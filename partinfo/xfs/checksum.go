package xfs

import (
	"encoding/binary"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcOK verifies the CRC32C that XFS v5 metadata stores little-endian at
// byte crcOff of buf, computed over buf with that field taken as zero.
func crcOK(buf []byte, crcOff int) bool {
	if crcOff < 0 || crcOff+4 > len(buf) {
		return false
	}
	var zero [4]byte
	c := crc32.Update(0, castagnoli, buf[:crcOff])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, buf[crcOff+4:])
	return c == binary.LittleEndian.Uint32(buf[crcOff:])
}

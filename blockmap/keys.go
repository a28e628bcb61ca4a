package blockmap

import "encoding/binary"

// Key prefixes of the Badger index.
const (
	prefixBlock   byte = 'b' // b | disk u32 | block u64 | ^gen u32 -> blockValue
	prefixPoint   byte = 'p' // p | vm | 0 | gen u32                  -> Point (JSON)
	prefixVM      byte = 'v' // v | vm                                -> vmRecord (JSON)
	prefixDisk    byte = 'd' // d | disk u32                          -> diskRecord (JSON)
	prefixSession byte = 's' // s | vm | 0 | gen u32                  -> sessionRecord (JSON)
	prefixGC      byte = 'g' // g | vm                                -> pending garbage collection
	keyNextDiskID      = "n"
)

// Kinds of block versions.
const (
	kindData byte = 1
	kindZero byte = 2
)

const blockKeyLen = 1 + 4 + 8 + 4

func blockKey(disk uint32, block uint64, gen uint32) []byte {
	k := make([]byte, blockKeyLen)
	k[0] = prefixBlock
	binary.BigEndian.PutUint32(k[1:], disk)
	binary.BigEndian.PutUint64(k[5:], block)
	binary.BigEndian.PutUint32(k[13:], ^gen)
	return k
}

func diskPrefix(disk uint32) []byte {
	k := make([]byte, 5)
	k[0] = prefixBlock
	binary.BigEndian.PutUint32(k[1:], disk)
	return k
}

// parseBlockKey splits a block key; ok is false for a malformed key.
func parseBlockKey(k []byte) (disk uint32, block uint64, gen uint32, ok bool) {
	if len(k) != blockKeyLen || k[0] != prefixBlock {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint64(k[5:]), ^binary.BigEndian.Uint32(k[13:]), true
}

func vmGenKey(prefix byte, vm string, gen uint32) []byte {
	k := make([]byte, 0, 1+len(vm)+1+4)
	k = append(k, prefix)
	k = append(k, vm...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, gen)
}

func vmGenPrefix(prefix byte, vm string) []byte {
	k := make([]byte, 0, 1+len(vm)+1)
	k = append(k, prefix)
	k = append(k, vm...)
	return append(k, 0)
}

func vmKey(vm string) []byte { return append([]byte{prefixVM}, vm...) }

func gcKey(vm string) []byte { return append([]byte{prefixGC}, vm...) }

func diskKey(disk uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixDisk}, disk)
}

// blockValue is what one generation holds for one block.
type blockValue struct {
	kind byte
	crc  uint32   // CRC-32C of the whole (zero-padded) block; read path check
	sum  [32]byte // hash (Config.Hash) of the whole (zero-padded) block; change detection and verify
}

func (v blockValue) encode() []byte {
	if v.kind != kindData {
		return []byte{v.kind}
	}
	b := make([]byte, 1+4+32)
	b[0] = v.kind
	binary.BigEndian.PutUint32(b[1:], v.crc)
	copy(b[5:], v.sum[:])
	return b
}

func decodeBlockValue(b []byte) (blockValue, bool) {
	var v blockValue
	if len(b) < 1 {
		return v, false
	}
	v.kind = b[0]
	switch v.kind {
	case kindZero:
		return v, true
	case kindData:
		if len(b) != 37 {
			return v, false
		}
		v.crc = binary.BigEndian.Uint32(b[1:])
		copy(v.sum[:], b[5:])
		return v, true
	}
	return v, false
}

package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	flagIndex           = 0x1000 // EXT4_INDEX_FL: hashed (htree) directory
	compatDirIndex      = 0x20
	sbFlagUnsignedHash  = 0x2
	hashHalfMD4         = 1
	hashHalfMD4Unsigned = 4
	// htreeMinBlocks: smaller directories are simply parsed and cached.
	htreeMinBlocks = 32
	maxHtreeLevels = 3 // with largedir
)

// errHtreeUnsupported makes Lookup fall back to the linear directory index.
var errHtreeUnsupported = errors.New("htree layout not handled")

// htreeLookup finds name in a large hashed directory by reading only the
// index blocks and one leaf block. found=false with a nil error is a
// definite miss. Any layout it does not handle returns errHtreeUnsupported.
func (f *FS) htreeLookup(n *inode, name string) (ino uint64, found bool, err error) {
	bs := f.sb.blockSize
	if n.flags&flagIndex == 0 || n.flags&flagInlineData != 0 || f.sb.compat&compatDirIndex == 0 ||
		n.size < htreeMinBlocks*bs || n.size%bs != 0 || f.sb.incompat&incompatCasefold != 0 {
		return 0, false, errHtreeUnsupported
	}
	le := binary.LittleEndian
	root := make([]byte, bs)
	if _, err := f.readContent(n, root, 0); err != nil {
		return 0, false, err
	}
	// dx_root: "." (12 bytes), ".." spanning the block, then dx_root_info.
	if le.Uint32(root[0x18:]) != 0 || root[0x1D] != 8 {
		return 0, false, errHtreeUnsupported
	}
	version := root[0x1C]
	if version == hashHalfMD4 && f.sb.flags&sbFlagUnsignedHash != 0 {
		version = hashHalfMD4Unsigned
	}
	if version != hashHalfMD4 && version != hashHalfMD4Unsigned {
		return 0, false, errHtreeUnsupported
	}
	levels := int(root[0x1E])
	if levels >= maxHtreeLevels {
		return 0, false, errHtreeUnsupported
	}
	hash := halfMD4Hash([]byte(name), f.sb.hashSeed, version == hashHalfMD4Unsigned)

	entries := root[0x20:]
	block := uint64(0)
	// The hash where the following leaf starts: from the deepest level
	// whose chosen entry is not the last of its node (as the kernel's
	// ext4_htree_next_block climbs).
	var after uint32
	hasAfter := false
	for level := 0; ; level++ {
		blk, next, ok, err := dxFind(entries, hash)
		if err != nil {
			return 0, false, err
		}
		block = blk
		if ok {
			after, hasAfter = next, true
		}
		if level == levels {
			break
		}
		node := make([]byte, bs)
		if err := f.readDirBlock(n, node, block); err != nil {
			return 0, false, err
		}
		// dx_node: a fake empty dirent spanning the block, then entries.
		entries = node[8:]
	}
	// Scan the leaf; names sharing the hash may continue in the next leaf,
	// marked by the low bit of the next index entry's hash.
	leaf := make([]byte, bs)
	if err := f.readDirBlock(n, leaf, block); err != nil {
		return 0, false, err
	}
	d := &dirIndex{byName: map[string]uint64{}}
	if err := f.parseDirBlock(leaf, d); err != nil {
		return 0, false, err
	}
	if ino, ok := d.byName[name]; ok {
		return ino, true, nil
	}
	if hasAfter && after&^1 == hash {
		// Names with this hash continue in the next leaf (a collision
		// chain): rare, so the linear index settles it.
		return 0, false, errHtreeUnsupported
	}
	return 0, false, nil
}

// readDirBlock reads logical block blk of directory n.
func (f *FS) readDirBlock(n *inode, p []byte, blk uint64) error {
	bs := f.sb.blockSize
	if int64(blk) >= n.size/bs {
		return fmt.Errorf("htree points to block %d beyond the directory: %w", blk, partinfo.ErrCorrupt)
	}
	_, err := f.readContent(n, p, int64(blk)*bs)
	return err
}

// dxFind picks the index entry for hash: the last whose hash is <= hash
// (the first entry, holding limit/count, covers hash 0). It returns the
// entry's block and, when it is not the last entry, the next entry's hash.
func dxFind(entries []byte, hash uint32) (block uint64, nextHash uint32, hasNext bool, err error) {
	le := binary.LittleEndian
	if len(entries) < 8 {
		return 0, 0, false, fmt.Errorf("htree index truncated: %w", partinfo.ErrCorrupt)
	}
	limit, count := int(le.Uint16(entries[0:])), int(le.Uint16(entries[2:]))
	if count == 0 || count > limit || 8*limit > len(entries) {
		return 0, 0, false, fmt.Errorf("htree index count %d limit %d: %w", count, limit, partinfo.ErrCorrupt)
	}
	lo, hi := 1, count // find the first entry with hash > target
	for lo < hi {
		mid := (lo + hi) / 2
		if le.Uint32(entries[8*mid:]) > hash {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	pick := lo - 1
	block = uint64(le.Uint32(entries[8*pick+4:]))
	if lo < count {
		return block, le.Uint32(entries[8*lo:]), true, nil
	}
	return block, 0, false, nil
}

// halfMD4Hash is ext4's DX_HASH_HALF_MD4 name hash (major hash, low bit clear).
func halfMD4Hash(name []byte, seed [4]uint32, unsigned bool) uint32 {
	buf := seed
	if buf == [4]uint32{} {
		buf = [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	}
	var in [8]uint32
	for p := name; ; p = p[32:] {
		str2hashbuf(p, in[:], unsigned)
		halfMD4Transform(&buf, &in)
		if len(p) <= 32 {
			break
		}
	}
	hash := buf[1] &^ 1
	if hash == 0x7FFFFFFF<<1 {
		hash = (0x7FFFFFFF - 1) << 1
	}
	return hash
}

// str2hashbuf packs up to len(buf)*4 bytes of msg into buf, padding with
// the length, exactly like the kernel (signed or unsigned char variant).
func str2hashbuf(msg []byte, buf []uint32, unsigned bool) {
	n := uint32(len(msg))
	pad := n | n<<8
	pad |= pad << 16
	val := pad
	num := len(buf)
	if len(msg) > num*4 {
		msg = msg[:num*4]
	}
	out := 0
	for i, c := range msg {
		v := uint32(c)
		if !unsigned {
			v = uint32(int32(int8(c)))
		}
		val = v + val<<8
		if i%4 == 3 {
			buf[out] = val
			out++
			val = pad
			num--
		}
	}
	if num--; num >= 0 {
		buf[out] = val
		out++
	}
	for ; num > 0; num-- {
		buf[out] = pad
		out++
	}
}

func halfMD4Transform(buf *[4]uint32, in *[8]uint32) {
	const k2, k3 = 0o13240474631, 0o15666365641
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	r := func(fn func(x, y, z uint32) uint32, a, b, c, d, x uint32, s int) uint32 {
		return bits.RotateLeft32(a+fn(b, c, d)+x, s)
	}
	a = r(f, a, b, c, d, in[0], 3)
	d = r(f, d, a, b, c, in[1], 7)
	c = r(f, c, d, a, b, in[2], 11)
	b = r(f, b, c, d, a, in[3], 19)
	a = r(f, a, b, c, d, in[4], 3)
	d = r(f, d, a, b, c, in[5], 7)
	c = r(f, c, d, a, b, in[6], 11)
	b = r(f, b, c, d, a, in[7], 19)

	a = r(g, a, b, c, d, in[1]+k2, 3)
	d = r(g, d, a, b, c, in[3]+k2, 5)
	c = r(g, c, d, a, b, in[5]+k2, 9)
	b = r(g, b, c, d, a, in[7]+k2, 13)
	a = r(g, a, b, c, d, in[0]+k2, 3)
	d = r(g, d, a, b, c, in[2]+k2, 5)
	c = r(g, c, d, a, b, in[4]+k2, 9)
	b = r(g, b, c, d, a, in[6]+k2, 13)

	a = r(h, a, b, c, d, in[3]+k3, 3)
	d = r(h, d, a, b, c, in[7]+k3, 9)
	c = r(h, c, d, a, b, in[2]+k3, 11)
	b = r(h, b, c, d, a, in[6]+k3, 15)
	a = r(h, a, b, c, d, in[1]+k3, 3)
	d = r(h, d, a, b, c, in[5]+k3, 9)
	c = r(h, c, d, a, b, in[0]+k3, 11)
	b = r(h, b, c, d, a, in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

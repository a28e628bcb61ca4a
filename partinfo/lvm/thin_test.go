package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// thinVG is a VG text with a thin pool (metadata LV at extent 0, data LV
// at extent 1, 64 KiB extents) and one 256 KiB thin volume, device 1.
const thinVG = `vg0 {
	id = "v"
	seqno = 1
	extent_size = 128
	physical_volumes {
		pv0 {
			id = "p"
			pe_start = 0
			pe_count = 16
		}
	}
	logical_volumes {
		pool {
			status = ["READ", "WRITE", "VISIBLE"]
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "thin-pool"
				metadata = "pool_tmeta"
				pool = "pool_tdata"
				chunk_size = 128
			}
		}
		pool_tmeta {
			segment1 {
				start_extent = 0
				extent_count = 1
				type = "striped"
				stripes = ["pv0", 0]
			}
		}
		pool_tdata {
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "striped"
				stripes = ["pv0", 1]
			}
		}
		thin {
			status = ["READ", "WRITE", "VISIBLE"]
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "thin"
				thin_pool = "pool"
				device_id = 1
			}
		}
	}
}
`

// craftThinMeta writes thin-pool metadata (16 blocks) into dev: the
// superblock, a top-level leaf (device 1 -> block 2) and the device's
// leaf mapping virtual block v to data block maps[v].
func craftThinMeta(dev []byte, maps map[uint64]uint64) {
	le := binary.LittleEndian
	sb := dev[0:thinBlockSize]
	le.PutUint64(sb[32:], thinMagic)
	le.PutUint32(sb[336:], 128) // 64 KiB data blocks
	le.PutUint32(sb[340:], 8)
	le.PutUint64(sb[344:], 16)
	le.PutUint64(sb[thinSuperDataRoot:], 1)
	node := func(block uint64, keys, vals []uint64) {
		b := dev[block*thinBlockSize : (block+1)*thinBlockSize]
		le.PutUint32(b[4:], thinLeafNode)
		le.PutUint64(b[8:], block)
		le.PutUint32(b[16:], uint32(len(keys)))
		le.PutUint32(b[20:], 126)
		le.PutUint32(b[24:], 8)
		for i := range keys {
			le.PutUint64(b[32+8*i:], keys[i])
			le.PutUint64(b[32+8*126+8*i:], vals[i])
		}
		le.PutUint32(b, thinCsum(b[4:], thinBtreeCsumXor))
	}
	node(1, []uint64{1}, []uint64{2})
	var keys, vals []uint64
	for v := uint64(0); v < 64; v++ {
		if d, ok := maps[v]; ok {
			keys = append(keys, v)
			vals = append(vals, d<<24|7)
		}
	}
	node(2, keys, vals)
	le.PutUint32(sb, thinCsum(sb[4:], thinSuperCsumXor))
}

func thinSetup(t testing.TB, dev []byte) *LV {
	root, err := ParseConfig([]byte(thinVG))
	if err != nil {
		t.Fatal(err)
	}
	vg, err := parseVG(root)
	if err != nil {
		t.Fatal(err)
	}
	vg.PVs[0].Device = &Device{Name: "d", R: bytes.NewReader(dev), Size: int64(len(dev))}
	return vg.LV("thin")
}

func TestThinCrafted(t *testing.T) {
	dev := make([]byte, 16*64<<10)
	craftThinMeta(dev, map[uint64]uint64{0: 2, 2: 0})
	for d := 0; d < 4; d++ { // data block d holds 'A'+d
		copy(dev[(1+d)*64<<10:(2+d)*64<<10], bytes.Repeat([]byte{byte('A' + d)}, 64<<10))
	}
	v, err := thinSetup(t, dev).Open()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, v.Size())
	if _, err := v.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i := 0; i < len(buf); i += 64 << 10 {
		got = append(got, buf[i]|0x20*boolByte(buf[i] == 0))
	}
	if string(got) != "C A " {
		t.Errorf("thin blocks read %q, want \"C A \" (unmapped blocks as zeros)", got)
	}
	// A flipped bit in the device's btree leaf is caught by its checksum.
	dev[2*thinBlockSize+40] ^= 1
	v, _ = thinSetup(t, dev).Open()
	if _, err := v.ReadAt(buf[:10], 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("read through a damaged btree node: %v, want ErrCorrupt", err)
	}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// FuzzThin mutates the superblock and both btree nodes of a thin pool
// (checksums refreshed) and reads the thin volume whole: errors are
// fine, panics, hangs and short reads without an error are not.
func FuzzThin(f *testing.F) {
	dev := make([]byte, 16*64<<10)
	craftThinMeta(dev, map[uint64]uint64{0: 2, 2: 0, 3: 1})
	f.Add(dev[:512], dev[thinBlockSize:thinBlockSize+1100], dev[2*thinBlockSize:2*thinBlockSize+1100])
	f.Fuzz(func(t *testing.T, sb, top, leaf []byte) {
		d := bytes.Clone(dev)
		copy(d[:512], sb)
		copy(d[thinBlockSize:2*thinBlockSize], top)
		copy(d[2*thinBlockSize:3*thinBlockSize], leaf)
		le := binary.LittleEndian
		for _, b := range []uint64{1, 2} {
			blk := d[b*thinBlockSize : (b+1)*thinBlockSize]
			le.PutUint32(blk, thinCsum(blk[4:], thinBtreeCsumXor))
		}
		le.PutUint32(d, thinCsum(d[4:thinBlockSize], thinSuperCsumXor))
		v, err := thinSetup(t, d).Open()
		if err != nil {
			return
		}
		buf := make([]byte, v.Size())
		n, err := v.ReadAt(buf, 0)
		if err == nil && n != len(buf) {
			t.Fatal(fmt.Sprintf("short read %d without an error", n))
		}
	})
}

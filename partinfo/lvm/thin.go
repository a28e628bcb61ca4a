package lvm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"sync"
)

// Thin-pool metadata (device-mapper persistent-data): a 4 KiB superblock
// at block 0 of the pool's metadata LV, a two-level btree (device id ->
// per-device btree; virtual block -> data block << 24 | time) and a
// device-details btree. Blocks carry CRC-32C checksums xored with a
// per-kind constant.
const (
	thinBlockSize     = 4096
	thinMagic         = 27022010
	thinSuperCsumXor  = 160774
	thinBtreeCsumXor  = 121107
	thinInternalNode  = 1
	thinLeafNode      = 2
	thinNodeHeader    = 32
	thinMaxDepth      = 16
	thinMaxMappings   = 1 << 26 // 4 TiB of 64 KiB chunks
	thinSuperDataRoot = 320
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// thinCsum is dm_bm_checksum: raw CRC-32C seeded with ~0, xored.
func thinCsum(b []byte, xor uint32) uint32 {
	return ^crc32.Checksum(b, castagnoli) ^ xor
}

// thinPool is the opened metadata of one thin pool.
type thinPool struct {
	meta      io.ReaderAt // the tmeta LV
	metaSize  int64
	data      io.ReaderAt // the tdata LV
	blockSize int64       // data block size in bytes
	mapRoot   uint64
	name      string
}

// thinMap is one device's mapping: sorted virtual blocks and their data
// blocks.
type thinMap struct {
	virt []uint64
	data []uint64
}

func openThinPool(vg *VG, pool *LV, depth int) (*thinPool, error) {
	if len(pool.Segments) != 1 || pool.Segments[0].Type != "thin-pool" {
		return nil, fmt.Errorf("LV %s is not a thin pool: %w", pool.Name, ErrCorrupt)
	}
	s := pool.Segments[0]
	metaName, _ := s.sec.Str("metadata")
	dataName, _ := s.sec.Str("pool")
	open := func(name, what string) (*Volume, error) {
		lv := vg.LV(name)
		if lv == nil {
			return nil, fmt.Errorf("thin pool %s: its %s LV %q is not in the metadata: %w", pool.Name, what, name, ErrCorrupt)
		}
		v, err := lv.open(depth + 1)
		if err != nil {
			return nil, fmt.Errorf("thin pool %s %s: %w", pool.Name, what, err)
		}
		return v, nil
	}
	meta, err := open(metaName, "metadata")
	if err != nil {
		return nil, err
	}
	data, err := open(dataName, "data")
	if err != nil {
		return nil, err
	}
	sb := make([]byte, thinBlockSize)
	if err := readFull(meta, sb, 0); err != nil {
		return nil, fmt.Errorf("thin pool %s: read superblock: %w", pool.Name, err)
	}
	le := binary.LittleEndian
	if le.Uint64(sb[32:]) != thinMagic {
		return nil, fmt.Errorf("thin pool %s: no thin-pool superblock (bad magic; the pool was never activated?): %w", pool.Name, ErrCorrupt)
	}
	if got := thinCsum(sb[4:], thinSuperCsumXor); got != le.Uint32(sb) {
		return nil, fmt.Errorf("thin pool %s: superblock checksum %08x, block says %08x: %w", pool.Name, got, le.Uint32(sb), ErrCorrupt)
	}
	if mbs := le.Uint32(sb[340:]); mbs != thinBlockSize/sector {
		return nil, fmt.Errorf("thin pool %s: metadata block size %d sectors: %w", pool.Name, mbs, ErrUnsupported)
	}
	dbs := int64(le.Uint32(sb[336:])) * sector
	if dbs < 64<<10 || dbs > 1<<30 || dbs%(64<<10) != 0 {
		return nil, fmt.Errorf("thin pool %s: data block size %d bytes: %w", pool.Name, dbs, ErrCorrupt)
	}
	return &thinPool{meta: meta, metaSize: meta.Size(), data: data, blockSize: dbs,
		mapRoot: le.Uint64(sb[thinSuperDataRoot:]), name: pool.Name}, nil
}

// node reads and checks one btree node.
func (p *thinPool) node(block uint64, valueSize int) (flags uint32, keys []uint64, vals []byte, err error) {
	if block == 0 || int64(block) >= p.metaSize/thinBlockSize {
		return 0, nil, nil, fmt.Errorf("thin pool %s: btree node at block %d outside the metadata: %w", p.name, block, ErrCorrupt)
	}
	b := make([]byte, thinBlockSize)
	if err := readFull(p.meta, b, int64(block)*thinBlockSize); err != nil {
		return 0, nil, nil, fmt.Errorf("thin pool %s: read btree node %d: %w", p.name, block, err)
	}
	le := binary.LittleEndian
	if got := thinCsum(b[4:], thinBtreeCsumXor); got != le.Uint32(b) {
		return 0, nil, nil, fmt.Errorf("thin pool %s: btree node %d checksum %08x, node says %08x: %w", p.name, block, got, le.Uint32(b), ErrCorrupt)
	}
	flags = le.Uint32(b[4:])
	n, max, vs := int(le.Uint32(b[16:])), int(le.Uint32(b[20:])), int(le.Uint32(b[24:]))
	if le.Uint64(b[8:]) != block || n > max || max <= 0 || thinNodeHeader+max*(8+vs) > thinBlockSize ||
		(flags != thinInternalNode && flags != thinLeafNode) {
		return 0, nil, nil, fmt.Errorf("thin pool %s: btree node %d header (flags %d, %d of %d entries, value size %d): %w", p.name, block, flags, n, max, vs, ErrCorrupt)
	}
	if (flags == thinInternalNode && vs != 8) || (flags == thinLeafNode && vs != valueSize) {
		return 0, nil, nil, fmt.Errorf("thin pool %s: btree node %d has %d-byte values: %w", p.name, block, vs, ErrCorrupt)
	}
	keys = make([]uint64, n)
	for i := range keys {
		keys[i] = le.Uint64(b[thinNodeHeader+8*i:])
		if i > 0 && keys[i] <= keys[i-1] {
			return 0, nil, nil, fmt.Errorf("thin pool %s: btree node %d keys out of order: %w", p.name, block, ErrCorrupt)
		}
	}
	vo := thinNodeHeader + 8*max
	return flags, keys, b[vo : vo+n*vs], nil
}

// walk visits every leaf entry of the btree at root in key order.
func (p *thinPool) walk(root uint64, depth int, lo uint64, seen map[uint64]bool, visit func(key uint64, val []byte) error) error {
	if depth > thinMaxDepth {
		return fmt.Errorf("thin pool %s: btree deeper than %d: %w", p.name, thinMaxDepth, ErrCorrupt)
	}
	if seen[root] {
		return fmt.Errorf("thin pool %s: btree node %d reached twice: %w", p.name, root, ErrCorrupt)
	}
	seen[root] = true
	flags, keys, vals, err := p.node(root, 8)
	if err != nil {
		return err
	}
	for i, k := range keys {
		if k < lo {
			return fmt.Errorf("thin pool %s: btree node %d key %d below its parent's %d: %w", p.name, root, k, lo, ErrCorrupt)
		}
		v := vals[8*i : 8*i+8]
		if flags == thinInternalNode {
			if err := p.walk(binary.LittleEndian.Uint64(v), depth+1, k, seen, visit); err != nil {
				return err
			}
			continue
		}
		if err := visit(k, v); err != nil {
			return err
		}
	}
	return nil
}

// deviceMap reads the whole mapping of one thin device.
func (p *thinPool) deviceMap(devID uint64, virtBlocks uint64) (*thinMap, error) {
	var root uint64
	found := false
	err := p.walk(p.mapRoot, 0, 0, map[uint64]bool{}, func(k uint64, v []byte) error {
		if k == devID {
			root, found = binary.LittleEndian.Uint64(v), true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := &thinMap{}
	if !found {
		return m, nil // a thin device never written: all holes
	}
	dataBlocks := uint64(0)
	if sz, ok := p.data.(interface{ Size() int64 }); ok {
		dataBlocks = uint64(sz.Size() / p.blockSize)
	}
	err = p.walk(root, 0, 0, map[uint64]bool{}, func(k uint64, v []byte) error {
		d := binary.LittleEndian.Uint64(v) >> 24
		if k >= virtBlocks || d >= dataBlocks {
			return fmt.Errorf("thin pool %s: device %d maps block %d to data block %d (device has %d blocks, pool %d): %w", p.name, devID, k, d, virtBlocks, dataBlocks, ErrCorrupt)
		}
		if len(m.virt) >= thinMaxMappings {
			return fmt.Errorf("thin pool %s: device %d has more than %d mappings: %w", p.name, devID, thinMaxMappings, ErrCorrupt)
		}
		m.virt = append(m.virt, k)
		m.data = append(m.data, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// thinReader maps a thin LV's segment through its pool's metadata. The
// device's mapping is read whole on first use.
func (lv *LV) thinReader(s *Segment, depth int) (func([]byte, int64) (int, error), error) {
	if _, ok := s.sec.Str("external_origin"); ok {
		return nil, fmt.Errorf("a thin volume with an external origin: %w", ErrUnsupported)
	}
	poolName, _ := s.sec.Str("thin_pool")
	devID, ok := s.sec.Int("device_id")
	if !ok || devID < 0 || devID >= 1<<24 {
		return nil, fmt.Errorf("thin volume without a valid device_id: %w", ErrCorrupt)
	}
	poolLV := lv.vg.LV(poolName)
	if poolLV == nil {
		return nil, fmt.Errorf("thin volume of pool %q, which the metadata does not define: %w", poolName, ErrCorrupt)
	}
	pool, err := openThinPool(lv.vg, poolLV, depth)
	if err != nil {
		return nil, err
	}
	es := lv.vg.ExtentSize
	base := s.Start * es
	virtBlocks := uint64((lv.Size() + pool.blockSize - 1) / pool.blockSize)
	var once sync.Once
	var m *thinMap
	var merr error
	return func(p []byte, off int64) (int, error) {
		once.Do(func() { m, merr = pool.deviceMap(uint64(devID), virtBlocks) })
		if merr != nil {
			return 0, merr
		}
		total := 0
		off += base
		for len(p) > 0 {
			blk := uint64(off / pool.blockSize)
			in := off % pool.blockSize
			n := len(p)
			if rest := pool.blockSize - in; int64(n) > rest {
				n = int(rest)
			}
			i := sort.Search(len(m.virt), func(i int) bool { return m.virt[i] >= blk })
			if i < len(m.virt) && m.virt[i] == blk {
				k, err := readExact(pool.data, p[:n], int64(m.data[i])*pool.blockSize+in)
				total += k
				if err != nil {
					return total, err
				}
			} else {
				clear(p[:n])
				total += n
			}
			p, off = p[n:], off+int64(n)
		}
		return total, nil
	}, nil
}

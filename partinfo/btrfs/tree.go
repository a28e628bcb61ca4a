package btrfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/cairnbackup/cairn/partinfo"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func corrupt(format string, a ...any) error {
	return fmt.Errorf("btrfs: "+format+": %w", append(a, partinfo.ErrCorrupt)...)
}

func readFull(r io.ReaderAt, p []byte, off int64) error { return partinfo.ReadFull(r, p, off) }

// key is a btrfs item key.
type key struct {
	objectid uint64
	typ      uint8
	offset   uint64
}

func (k key) less(o key) bool {
	if k.objectid != o.objectid {
		return k.objectid < o.objectid
	}
	if k.typ != o.typ {
		return k.typ < o.typ
	}
	return k.offset < o.offset
}

func readKey(b []byte) key {
	le := binary.LittleEndian
	return key{le.Uint64(b), b[8], le.Uint64(b[9:])}
}

const (
	headerSize  = 101
	leafItem    = 25
	keyPtr      = 33
	maxLevel    = 8
	nodeCacheSz = 2048
)

// node is a checked tree block.
type node struct {
	level uint8
	keys  []key
	// leaf: item data; internal: child block pointers
	data [][]byte
	ptrs []uint64
}

type nodeCache struct {
	mu sync.Mutex
	m  map[uint64]*node
}

func (c *nodeCache) get(a uint64) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[a]
}

func (c *nodeCache) put(a uint64, n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= nodeCacheSz {
		c.m = map[uint64]*node{}
	}
	c.m[a] = n
}

// readNode reads and checks the tree block at a logical address: the
// checksum, its own address, the filesystem id and the level.
func (f *FS) readNode(addr uint64, wantLevel int) (*node, error) {
	if n := f.nodes.get(addr); n != nil {
		return n, nil
	}
	copies, err := f.nodeCopies(addr)
	if err != nil {
		return nil, err
	}
	b := make([]byte, f.nodesize)
	var lastErr error
	for _, c := range copies {
		if err := c.read(b); err != nil {
			lastErr = err
			continue
		}
		if got := crc32.Checksum(b[32:], castagnoli); got != binary.LittleEndian.Uint32(b) {
			lastErr = corrupt("tree block %d: checksum %08x, block says %08x", addr, got, binary.LittleEndian.Uint32(b))
			continue
		}
		lastErr = nil
		break
	}
	if lastErr != nil {
		return nil, lastErr
	}
	le := binary.LittleEndian
	if le.Uint64(b[48:]) != addr || !bytes.Equal(b[32:48], f.fsid[:]) {
		return nil, corrupt("tree block %d: header names block %d of another filesystem", addr, le.Uint64(b[48:]))
	}
	n := &node{level: b[100]}
	if int(n.level) > maxLevel || (wantLevel >= 0 && int(n.level) != wantLevel) {
		return nil, corrupt("tree block %d: level %d, expected %d", addr, n.level, wantLevel)
	}
	count := int(le.Uint32(b[96:]))
	body := b[headerSize:]
	if n.level == 0 {
		if count*leafItem > len(body) {
			return nil, corrupt("leaf %d: %d items", addr, count)
		}
		for i := 0; i < count; i++ {
			it := body[i*leafItem:]
			k := readKey(it)
			o, sz := int(le.Uint32(it[17:])), int(le.Uint32(it[21:]))
			if o < count*leafItem || o+sz > len(body) || sz < 0 {
				return nil, corrupt("leaf %d item %d: data %d+%d outside the block", addr, i, o, sz)
			}
			if i > 0 && !n.keys[i-1].less(k) {
				return nil, corrupt("leaf %d: keys out of order", addr)
			}
			n.keys = append(n.keys, k)
			n.data = append(n.data, body[o:o+sz])
		}
	} else {
		if count*keyPtr > len(body) || count == 0 {
			return nil, corrupt("node %d: %d pointers", addr, count)
		}
		for i := 0; i < count; i++ {
			it := body[i*keyPtr:]
			k := readKey(it)
			if i > 0 && !n.keys[i-1].less(k) {
				return nil, corrupt("node %d: keys out of order", addr)
			}
			n.keys = append(n.keys, k)
			n.ptrs = append(n.ptrs, le.Uint64(it[17:]))
		}
	}
	f.nodes.put(addr, n)
	return n, nil
}

// walk calls fn for the items of the tree at root from the last item
// whose key is <= start (or the first item) onward, in key order, until
// fn returns false.
func (f *FS) walk(root uint64, level int, start key, fn func(k key, data []byte) bool) error {
	_, err := f.walkNode(root, level, start, fn, 0)
	return err
}

func (f *FS) walkNode(addr uint64, level int, start key, fn func(key, []byte) bool, depth int) (bool, error) {
	if depth > maxLevel {
		return false, corrupt("tree deeper than %d", maxLevel)
	}
	n, err := f.readNode(addr, level)
	if err != nil {
		return false, err
	}
	// i: the last key <= start.
	i := 0
	for j, k := range n.keys {
		if start.less(k) {
			break
		}
		i = j
	}
	if n.level == 0 {
		for ; i < len(n.keys); i++ {
			if !fn(n.keys[i], n.data[i]) {
				return false, nil
			}
		}
		return true, nil
	}
	for ; i < len(n.keys); i++ {
		more, err := f.walkNode(n.ptrs[i], int(n.level)-1, start, fn, depth+1)
		if err != nil || !more {
			return more, err
		}
	}
	return true, nil
}

// items returns the items with the given objectid and type (offsets from
// min on).
func (f *FS) items(root uint64, level int, objectid uint64, typ uint8, min uint64) (keys []key, datas [][]byte, err error) {
	err = f.walk(root, level, key{objectid, typ, min}, func(k key, d []byte) bool {
		if k.objectid > objectid || (k.objectid == objectid && k.typ > typ) {
			return false
		}
		if k.objectid == objectid && k.typ == typ && k.offset >= min {
			keys = append(keys, k)
			datas = append(datas, d)
		}
		return true
	})
	return keys, datas, err
}

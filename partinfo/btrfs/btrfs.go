package btrfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"sync"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	superOffset = 0x10000
	superSize   = 0x1000
	chunkItem   = 228
	rootItem    = 132
	rootTreeID  = 1
	chunkTreeID = 3
	fsTreeID    = 5
	csumTreeID  = 7
	rootDirObj  = 6
	firstFree   = 256
	dupFlag     = 1 << 5
	profileMask = (1 << 3) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) // raid0/1/10/5/6/1c3/1c4
	maxTrees    = 255
	objectBits  = 40
	objectMask  = 1<<objectBits - 1
)

// FS is an open btrfs filesystem.
type FS struct {
	r         io.ReaderAt
	off, size int64
	fsid      [16]byte
	nodesize  uint32
	sector    uint32
	chunks    []chunk
	rootTree  uint64
	rootLevel int
	csumRoot  uint64
	csumLevel int
	info      partinfo.Info
	nodes     nodeCache

	mu      sync.Mutex
	trees   []tree         // index -> tree; index 0 unused
	treeIdx map[uint64]int // tree id -> index
	defTree int            // index of the default subvolume
	files   map[uint64]*fileMap
	csumWin *csumWindow // the checksums of the last data read's window
}

// tree is one subvolume (or the top-level FS tree).
type tree struct {
	id      uint64
	root    uint64
	level   int
	rootDir uint64
}

// Open reads the superblock and chunk tree of the btrfs at r[off:off+size].
func Open(r io.ReaderAt, off, size int64) (*FS, error) {
	sb := make([]byte, superSize)
	if err := readFull(r, sb, off+superOffset); err != nil {
		return nil, fmt.Errorf("btrfs: read superblock: %w", err)
	}
	le := binary.LittleEndian
	if string(sb[0x40:0x48]) != "_BHRfS_M" {
		return nil, corrupt("no superblock magic")
	}
	if ct := le.Uint16(sb[0xc4:]); ct != 0 {
		return nil, fmt.Errorf("btrfs: checksum type %d (only crc32c is read): %w", ct, partinfo.ErrCorrupt)
	}
	if got := crc32.Checksum(sb[0x20:], castagnoli); got != le.Uint32(sb) {
		return nil, corrupt("superblock checksum %08x, superblock says %08x", got, le.Uint32(sb))
	}
	f := &FS{r: r, off: off, size: size, nodes: nodeCache{m: map[uint64]*node{}}, treeIdx: map[uint64]int{},
		trees: []tree{{}}, files: map[uint64]*fileMap{}}
	copy(f.fsid[:], sb[0x20:0x30])
	if md := sb[0x23b : 0x23b+16]; le.Uint64(sb[0xbc:])&(1<<10) != 0 { // METADATA_UUID
		copy(f.fsid[:], md)
	}
	f.sector, f.nodesize = le.Uint32(sb[0x90:]), le.Uint32(sb[0x94:])
	if f.sector < 512 || f.sector > 65536 || f.sector&(f.sector-1) != 0 || f.nodesize < f.sector || f.nodesize > 65536 {
		return nil, corrupt("sector size %d, node size %d", f.sector, f.nodesize)
	}
	if nd := le.Uint64(sb[0x88:]); nd != 1 {
		return nil, fmt.Errorf("btrfs: a filesystem of %d devices: cairn reads single-device btrfs only; export the disks and mount them together on Linux: %w", nd, partinfo.ErrCorrupt)
	}
	// Bootstrap chunks from the superblock.
	n := int(le.Uint32(sb[0xa0:]))
	if n > 2048 {
		return nil, corrupt("sys_chunk_array of %d bytes", n)
	}
	arr := sb[0x32b : 0x32b+n]
	for len(arr) > 0 {
		if len(arr) < 17+48 {
			return nil, corrupt("short sys_chunk_array")
		}
		k := readKey(arr)
		c, used, err := parseChunk(k, arr[17:])
		if err != nil {
			return nil, err
		}
		f.chunks = append(f.chunks, c)
		arr = arr[17+used:]
	}
	// The chunk tree holds them all.
	var perr error
	err := f.walk(le.Uint64(sb[0x58:]), int(sb[0xc7]), key{0, 0, 0}, func(k key, d []byte) bool {
		if k.typ == chunkItem {
			c, _, e := parseChunk(k, d)
			if e != nil {
				perr = e
				return false
			}
			f.addChunk(c)
		}
		return true
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("btrfs: chunk tree: %w", err)
	}
	f.rootTree, f.rootLevel = le.Uint64(sb[0x50:]), int(sb[0xc6])
	if _, err := f.treeIndex(fsTreeID); err != nil {
		return nil, err
	}
	if t, err := f.lookupTree(csumTreeID); err == nil {
		f.csumRoot, f.csumLevel = t.root, t.level
	}
	f.defTree = f.treeIdx[fsTreeID]
	if def, ok := f.defaultSubvol(); ok {
		if i, err := f.treeIndex(def); err == nil {
			f.defTree = i
		}
	}
	f.info = partinfo.Info{Type: "btrfs", Label: cString(sb[0x12b : 0x12b+256]), UUID: formatUUID(sb[0x20:0x30]),
		BlockSize: int(f.sector), Size: int64(le.Uint64(sb[0x70:])), Used: int64(le.Uint64(sb[0x78:]))}
	f.info.Free = f.info.Size - f.info.Used
	return f, nil
}

func (f *FS) addChunk(c chunk) {
	for _, o := range f.chunks {
		if o.logical == c.logical {
			return
		}
	}
	f.chunks = append(f.chunks, c)
	sort.Slice(f.chunks, func(i, j int) bool { return f.chunks[i].logical < f.chunks[j].logical })
}

func parseChunk(k key, b []byte) (chunk, int, error) {
	le := binary.LittleEndian
	if k.typ != chunkItem || len(b) < 48 {
		return chunk{}, 0, corrupt("chunk item")
	}
	c := chunk{logical: k.offset, length: le.Uint64(b)}
	typ := le.Uint64(b[24:])
	ns := int(le.Uint16(b[44:]))
	if ns < 1 || 48+32*ns > len(b) || c.length == 0 {
		return chunk{}, 0, corrupt("chunk at %d: %d stripes", k.offset, ns)
	}
	if typ&profileMask != 0 {
		return chunk{}, 0, fmt.Errorf("btrfs: chunk at %d has a RAID profile (%#x): multi-device btrfs is not read: %w", k.offset, typ, partinfo.ErrCorrupt)
	}
	for i := 0; i < ns; i++ {
		c.physical = append(c.physical, le.Uint64(b[48+32*i+8:]))
	}
	return c, 48 + 32*ns, nil
}

// lookupTree finds a tree's root in the root tree.
func (f *FS) lookupTree(id uint64) (tree, error) {
	keys, datas, err := f.items(f.rootTree, f.rootLevel, id, rootItem, 0)
	if err != nil {
		return tree{}, err
	}
	if len(keys) == 0 {
		return tree{}, corrupt("no root item for tree %d", id)
	}
	d := datas[len(datas)-1]
	if len(d) < 239 {
		return tree{}, corrupt("root item of tree %d: %d bytes", id, len(d))
	}
	le := binary.LittleEndian
	return tree{id: id, root: le.Uint64(d[176:]), level: int(d[238]), rootDir: le.Uint64(d[168:])}, nil
}

// treeIndex returns the small index of a subvolume tree, loading it.
func (f *FS) treeIndex(id uint64) (int, error) {
	f.mu.Lock()
	i, ok := f.treeIdx[id]
	f.mu.Unlock()
	if ok {
		return i, nil
	}
	t, err := f.lookupTree(id)
	if err != nil {
		return 0, err
	}
	if t.rootDir == 0 {
		t.rootDir = firstFree
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.treeIdx[id]; ok {
		return i, nil
	}
	if len(f.trees) > maxTrees {
		return 0, fmt.Errorf("btrfs: more than %d subvolumes opened: %w", maxTrees, partinfo.ErrCorrupt)
	}
	f.trees = append(f.trees, t)
	f.treeIdx[id] = len(f.trees) - 1
	return len(f.trees) - 1, nil
}

// defaultSubvol reads the "default" dir item of the root tree directory.
func (f *FS) defaultSubvol() (uint64, bool) {
	_, datas, err := f.items(f.rootTree, f.rootLevel, rootDirObj, dirItem, 0)
	if err != nil {
		return 0, false
	}
	for _, d := range datas {
		for _, e := range parseDirItems(d) {
			if e.name == "default" {
				return e.location.objectid, true
			}
		}
	}
	return 0, false
}

func (f *FS) tree(i int) tree {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trees[i]
}

// split turns a view inode into (tree index, objectid).
func split(ino uint64) (int, uint64) { return int(ino >> objectBits), ino & objectMask }

func join(t int, obj uint64) uint64 { return uint64(t)<<objectBits | obj&objectMask }

// Info describes the filesystem.
func (f *FS) Info() partinfo.Info { return f.info }

// Root is the default subvolume's root directory.
func (f *FS) Root() uint64 { return join(f.defTree, f.tree(f.defTree).rootDir) }

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func formatUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

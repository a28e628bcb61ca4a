package btrfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
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
	maxTrees    = 255
	objectBits  = 40
	objectMask  = 1<<objectBits - 1
)

// FS is an open btrfs filesystem.
type FS struct {
	devs      map[uint64]*device // by devid
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
// A device of a filesystem of several devices gives an error wrapping
// ErrMultiDevice: OpenDevices reads those.
func Open(r io.ReaderAt, off, size int64) (*FS, error) {
	return open([]partinfo.Region{{Name: "btrfs", R: r, Off: off, Size: size}}, true)
}

// OpenDevices reads a btrfs filesystem from its devices (any order; each
// found by the devid and device UUID of its superblock). Devices missing
// from devs leave holes that mirrored chunks read around; a read that
// needs one fails with ErrMissingDevice.
func OpenDevices(devs []partinfo.Region) (*FS, error) {
	if len(devs) == 0 {
		return nil, fmt.Errorf("btrfs: no devices: %w", ErrMissingDevice)
	}
	return open(devs, false)
}

func open(regions []partinfo.Region, single bool) (*FS, error) {
	f := &FS{devs: map[uint64]*device{}, nodes: nodeCache{m: map[uint64]*node{}}, treeIdx: map[uint64]int{},
		trees: []tree{{}}, files: map[uint64]*fileMap{}}
	var sb []byte
	var gen uint64
	for _, r := range regions {
		b, err := readSuper(r)
		if err != nil {
			if len(regions) > 1 {
				err = fmt.Errorf("%s: %w", r.Name, err)
			}
			return nil, err
		}
		d := deviceOf(r, b)
		if sb != nil && !bytes.Equal(b[0x20:0x30], sb[0x20:0x30]) {
			return nil, fmt.Errorf("btrfs: %s belongs to filesystem %s, not %s: %w", r.Name, formatUUID(b[0x20:0x30]), formatUUID(sb[0x20:0x30]), partinfo.ErrCorrupt)
		}
		if o := f.devs[d.id]; o != nil {
			return nil, fmt.Errorf("btrfs: %s and %s both are device %d: %w", o.name, d.name, d.id, partinfo.ErrCorrupt)
		}
		f.devs[d.id] = d
		// The newest superblock describes the filesystem (a device
		// left behind has an older generation).
		if g := binary.LittleEndian.Uint64(b[0x48:]); sb == nil || g > gen {
			sb, gen = b, g
		}
	}
	le := binary.LittleEndian
	copy(f.fsid[:], sb[0x20:0x30])
	if md := sb[0x23b : 0x23b+16]; le.Uint64(sb[0xbc:])&(1<<10) != 0 { // METADATA_UUID
		copy(f.fsid[:], md)
	}
	f.sector, f.nodesize = le.Uint32(sb[0x90:]), le.Uint32(sb[0x94:])
	if f.sector < 512 || f.sector > 65536 || f.sector&(f.sector-1) != 0 || f.nodesize < f.sector || f.nodesize > 65536 {
		return nil, corrupt("sector size %d, node size %d", f.sector, f.nodesize)
	}
	if nd := le.Uint64(sb[0x88:]); single && nd != 1 {
		return nil, multiDeviceError(sb)
	} else if nd == 0 || nd > maxDevices {
		return nil, corrupt("%d devices", nd)
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
		c, used, err := f.parseChunk(k, arr[17:])
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
			c, _, e := f.parseChunk(k, d)
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

package btrfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	inodeItem  = 1
	dirItem    = 84
	dirIndex   = 96
	extentData = 108
)

// inode is a parsed INODE_ITEM.
type inode struct {
	size                  int64
	nbytes                int64
	nlink, uid, gid, mode uint32
	rdev                  uint64
	flags                 uint64
	atime, ctime, mtime   time.Time
}

func btime(b []byte) time.Time {
	le := binary.LittleEndian
	return time.Unix(int64(le.Uint64(b)), int64(le.Uint32(b[8:])%1e9)).UTC()
}

// emptySubvolDir is the objectid of the placeholder directory a snapshot
// shows for a subvolume of its origin (BTRFS_EMPTY_SUBVOL_DIR_OBJECTID);
// the view keeps several apart in the high bits.
const emptySubvolDir = 2

// subvolIn reports whether tree child is a subvolume linked from tree
// parent (a ROOT_REF item).
func (f *FS) subvolIn(parent, child uint64) bool {
	keys, _, err := f.items(f.rootTree, f.rootLevel, parent, rootRef, child)
	return err == nil && len(keys) > 0 && keys[0].offset == child
}

const rootRef = 156

func (f *FS) inode(ino uint64) (inode, tree, uint64, error) {
	ti, obj := split(ino)
	if obj&0xffffffff == emptySubvolDir {
		if ti > 0 && ti < f.treeCount() {
			t := f.tree(ti)
			root, _, _, err := f.inode(join(ti, t.rootDir))
			if err != nil {
				return inode{}, t, obj, err
			}
			return inode{mode: 0o40755, nlink: 1, atime: root.atime, mtime: root.mtime, ctime: root.ctime}, t, obj, nil
		}
	}
	if ti <= 0 || ti >= f.treeCount() {
		return inode{}, tree{}, 0, fmt.Errorf("btrfs: inode %d: %w", ino, fs.ErrNotExist)
	}
	t := f.tree(ti)
	keys, datas, err := f.items(t.root, t.level, obj, inodeItem, 0)
	if err != nil {
		return inode{}, t, obj, err
	}
	if len(keys) == 0 {
		return inode{}, t, obj, fmt.Errorf("btrfs: inode %d of tree %d: %w", obj, t.id, fs.ErrNotExist)
	}
	d := datas[0]
	if len(d) < 160 {
		return inode{}, t, obj, corrupt("inode item %d: %d bytes", obj, len(d))
	}
	le := binary.LittleEndian
	in := inode{size: int64(le.Uint64(d[16:])), nbytes: int64(le.Uint64(d[24:])), nlink: le.Uint32(d[40:]),
		uid: le.Uint32(d[44:]), gid: le.Uint32(d[48:]), mode: le.Uint32(d[52:]), rdev: le.Uint64(d[56:]),
		flags: le.Uint64(d[64:]), atime: btime(d[112:]), ctime: btime(d[124:]), mtime: btime(d[136:])}
	if in.size < 0 {
		return inode{}, t, obj, corrupt("inode %d: size %d", obj, in.size)
	}
	return in, t, obj, nil
}

func (f *FS) treeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.trees)
}

func goMode(m uint32) fs.FileMode {
	mode, _ := partinfo.UnixMode(m)
	return mode
}

// Stat returns an inode's attributes.
func (f *FS) Stat(ino uint64) (partinfo.Attr, error) {
	in, _, _, err := f.inode(ino)
	if err != nil {
		return partinfo.Attr{}, err
	}
	return partinfo.Attr{Ino: ino, Mode: goMode(in.mode), Uid: in.uid, Gid: in.gid, Nlink: in.nlink, Size: in.size,
		Blocks: in.nbytes / 512, Atime: in.atime, Mtime: in.mtime, Ctime: in.ctime,
		Rdev: uint32(in.rdev>>20)<<8 | uint32(in.rdev&0xff) | uint32((in.rdev&0xfff00)<<12)}, nil
}

// dirEntry is a parsed dir item.
type dirEntry struct {
	location key
	typ      uint8
	name     string
}

func parseDirItems(d []byte) []dirEntry {
	le := binary.LittleEndian
	var out []dirEntry
	for len(d) >= 30 {
		dl, nl := int(le.Uint16(d[25:])), int(le.Uint16(d[27:]))
		if 30+nl+dl > len(d) {
			break
		}
		out = append(out, dirEntry{location: readKey(d), typ: d[29], name: string(d[30 : 30+nl])})
		d = d[30+nl+dl:]
	}
	return out
}

var dirTypes = map[uint8]fs.FileMode{1: 0, 2: fs.ModeDir, 3: fs.ModeDevice | fs.ModeCharDevice, 4: fs.ModeDevice,
	5: fs.ModeNamedPipe, 6: fs.ModeSocket, 7: fs.ModeSymlink}

// entries lists a directory: DIR_INDEX items in index order. Entries
// that point at a subvolume lead to its root directory.
func (f *FS) entries(ino uint64) ([]partinfo.DirEntry, error) {
	in, t, obj, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if in.mode&0o170000 != 0o040000 {
		return nil, fmt.Errorf("btrfs: inode %d: %w", ino, partinfo.ErrNotDir)
	}
	ti, _ := split(ino)
	if obj&0xffffffff == emptySubvolDir {
		return nil, nil
	}
	_, datas, err := f.items(t.root, t.level, obj, dirIndex, 2)
	if err != nil {
		return nil, err
	}
	var out []partinfo.DirEntry
	for _, d := range datas {
		for _, e := range parseDirItems(d) {
			if e.name == "" || e.name == "." || e.name == ".." {
				return nil, corrupt("directory %d: entry name %q", obj, e.name)
			}
			de := partinfo.DirEntry{Name: e.name, Type: dirTypes[e.typ]}
			switch e.location.typ {
			case inodeItem:
				de.Ino = join(ti, e.location.objectid)
			case rootItem:
				if !f.subvolIn(t.id, e.location.objectid) {
					// A snapshot keeps the entry of a subvolume it
					// does not contain: an empty directory, as the
					// kernel shows it.
					de.Ino, de.Type = join(ti, emptySubvolDir|uint64(len(out))<<32), fs.ModeDir
					out = append(out, de)
					continue
				}
				sub, err := f.treeIndex(e.location.objectid)
				if err != nil {
					return nil, fmt.Errorf("btrfs: subvolume %q (tree %d): %w", e.name, e.location.objectid, err)
				}
				de.Ino, de.Type = join(sub, f.tree(sub).rootDir), fs.ModeDir
			default:
				return nil, corrupt("directory %d: entry %q points at key type %d", obj, e.name, e.location.typ)
			}
			out = append(out, de)
		}
	}
	return out, nil
}

// ReadDir lists a directory.
func (f *FS) ReadDir(ino uint64) ([]partinfo.DirEntry, error) { return f.entries(ino) }

// Lookup finds a name in a directory.
func (f *FS) Lookup(dir uint64, name string) (uint64, error) {
	es, err := f.entries(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range es {
		if e.Name == name {
			return e.Ino, nil
		}
	}
	return 0, fmt.Errorf("btrfs: %q: %w", name, fs.ErrNotExist)
}

// Readlink returns a symlink's target (an inline extent).
func (f *FS) Readlink(ino uint64) (string, error) {
	in, _, _, err := f.inode(ino)
	if err != nil {
		return "", err
	}
	if in.mode&0o170000 != 0o120000 {
		return "", fmt.Errorf("btrfs: inode %d: %w", ino, partinfo.ErrNotSymlink)
	}
	if in.size > 4096 {
		return "", corrupt("symlink %d of %d bytes", ino, in.size)
	}
	b := make([]byte, in.size)
	if _, err := f.readFile(ino, in, b, 0); err != nil {
		return "", err
	}
	return string(b), nil
}

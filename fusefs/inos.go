package fusefs

import (
	"strconv"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// inoTable gives the mount's own nodes (VM and point directories, disks/,
// fs/ and what is in them, up to the guest filesystems' roots) their
// inode numbers: one per (parent inode, name), handed out in order from
// 2 (the root is 1) the first time a listing or a lookup needs it and kept
// for the life of the mount. So a listing gives every entry the number
// stat reports (ls -i), before any lookup made the node, and a node the
// kernel forgot comes back with the same number. go-fuse's automatic
// numbers (from 1<<63) and the guest filesystems' (a per-volume salt
// from 1<<48, see fusefs/guest) are other ranges.
type inoTable struct {
	mu   sync.Mutex
	next uint64
	m    map[inoKey]uint64
}

type inoKey struct {
	parent uint64
	name   string
}

// ino is the inode number of entry name of directory parent.
func (t *tree) ino(parent *gofs.Inode, name string) uint64 {
	k := inoKey{parent.StableAttr().Ino, name}
	tab := &t.inos
	tab.mu.Lock()
	defer tab.mu.Unlock()
	if n, ok := tab.m[k]; ok {
		return n
	}
	if tab.m == nil {
		tab.m, tab.next = map[inoKey]uint64{}, fuse.FUSE_ROOT_ID+1
	}
	n := tab.next
	tab.next++
	tab.m[k] = n
	return n
}

// pointInoName is the name a point directory is numbered under: its id
// and generation, so a point deleted and pulled again under the same id
// is another node.
func pointInoName(p blockmap.Point) string {
	return p.ID + "\x00" + strconv.FormatUint(uint64(p.Gen), 10)
}

// numbered sets the inode number of every entry of directory dir
// (entries named as their nodes are numbered).
func (t *tree) numbered(dir *gofs.Inode, entries []fuse.DirEntry) []fuse.DirEntry {
	for i := range entries {
		entries[i].Ino = t.ino(dir, entries[i].Name)
	}
	return entries
}

// child is the StableAttr of entry name of dir, of the given type.
func (t *tree) child(dir *gofs.Inode, name string, mode uint32) gofs.StableAttr {
	return gofs.StableAttr{Mode: mode, Ino: t.ino(dir, name)}
}

// childDir and childFile are child for a directory and a regular file.
func (t *tree) childDir(dir *gofs.Inode, name string) gofs.StableAttr {
	return t.child(dir, name, syscall.S_IFDIR)
}

func (t *tree) childFile(dir *gofs.Inode, name string) gofs.StableAttr {
	return t.child(dir, name, syscall.S_IFREG)
}

// ChildInos sets the inode number of every entry of directory dir that
// is one of dir's children in the node tree (persistent children, as an
// FSProvider's or VolumeProvider's directories add in OnAdd), so that a
// listing gives the number stat reports (ls -i); entries of no child are
// left as they are.
func ChildInos(dir *gofs.Inode, entries []fuse.DirEntry) []fuse.DirEntry {
	for i := range entries {
		if ch := dir.GetChild(entries[i].Name); ch != nil {
			entries[i].Ino = ch.StableAttr().Ino
		}
	}
	return entries
}

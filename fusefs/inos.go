package fusefs

import (
	"strconv"
	"strings"
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
// while the entry exists. So a listing gives every entry the number
// stat reports (ls -i), before any lookup made the node, and a node the
// kernel forgot comes back with the same number. go-fuse's automatic
// numbers (from 1<<63) and the guest filesystems' (a per-volume salt
// from 1<<48, see fusefs/guest) are other ranges.
//
// The table holds only what the catalog can still reach: after every
// catalog change (tree.catalogChanged) the entries of deleted points and
// of VMs without points are dropped with everything below them (trim).
// The counter is never reset, so a number is never given to another
// entry during the mount's life; an entry asked for below a directory
// already dropped (a deleted point still open somewhere) gets a fresh
// number that is not recorded.
type inoTable struct {
	mu   sync.Mutex
	next uint64
	// dirs holds the entries of every numbered node by name; a node
	// without entries has a nil map. A number is live while it is a
	// key of dirs.
	dirs map[uint64]map[string]uint64
}

// ino is the inode number of entry name of directory parent.
func (t *tree) ino(parent *gofs.Inode, name string) uint64 {
	return t.inos.get(parent.StableAttr().Ino, name)
}

func (tab *inoTable) get(parent uint64, name string) uint64 {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	tab.init()
	kids, live := tab.dirs[parent]
	if n, ok := kids[name]; ok {
		return n
	}
	n := tab.next
	tab.next++
	if !live {
		return n // below a dropped directory: not recorded
	}
	if kids == nil {
		kids = map[string]uint64{}
		tab.dirs[parent] = kids
	}
	kids[name] = n
	tab.dirs[n] = nil
	return n
}

func (tab *inoTable) init() {
	if tab.dirs == nil {
		tab.dirs, tab.next = map[uint64]map[string]uint64{fuse.FUSE_ROOT_ID: nil}, fuse.FUSE_ROOT_ID+1
	}
}

// trim drops the entries the catalog snapshot cur no longer reaches: VM
// directories of VMs without points and point directories of deleted
// points (by id and generation), each with everything below it. It looks
// at every VM and point entry, not only at the points a change deleted,
// so an entry a request made from an older snapshot while the catalog
// changed goes at the next change.
func (tab *inoTable) trim(cur *catalogSnap) {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	tab.init()
	root := tab.dirs[fuse.FUSE_ROOT_ID]
	for vm, vmIno := range root {
		v, ok := cur.vms[vm]
		if !ok {
			tab.drop(root, vm)
			continue
		}
		kids := tab.dirs[vmIno]
		for name := range kids {
			if name == latestName {
				continue
			}
			if id, gen, ok := splitPointInoName(name); ok {
				if p, ok := v.point(id); ok && p.Gen == gen {
					continue
				}
			}
			tab.drop(kids, name)
		}
	}
}

// drop removes entry name of the directory whose entries are kids, and
// everything below it.
func (tab *inoTable) drop(kids map[string]uint64, name string) {
	n, ok := kids[name]
	if !ok {
		return
	}
	delete(kids, name)
	tab.dropBelow(n)
}

func (tab *inoTable) dropBelow(n uint64) {
	kids := tab.dirs[n]
	delete(tab.dirs, n)
	for _, ch := range kids {
		tab.dropBelow(ch)
	}
}

// size is the number of entries in the table (the root not counted).
func (tab *inoTable) size() int {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return max(len(tab.dirs)-1, 0)
}

// pointInoName is the name a point directory is numbered under: its id
// and generation, so a point deleted and pulled again under the same id
// is another node.
func pointInoName(p blockmap.Point) string {
	return p.ID + "\x00" + strconv.FormatUint(uint64(p.Gen), 10)
}

// splitPointInoName is the id and generation of a pointInoName.
func splitPointInoName(name string) (string, uint32, bool) {
	id, gen, ok := strings.Cut(name, "\x00")
	if !ok {
		return "", 0, false
	}
	g, err := strconv.ParseUint(gen, 10, 32)
	if err != nil {
		return "", 0, false
	}
	return id, uint32(g), true
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

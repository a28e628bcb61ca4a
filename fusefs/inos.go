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
	mu    sync.Mutex
	next  uint64
	count int // entries held
	peak  int // most directories dirs held (see trim)
	// dirs holds the entries of every numbered directory; a number is
	// a live directory while it is a key of dirs. Other entries (files,
	// links) are only in their directory's inoDir.
	dirs map[uint64]inoDir
}

// inoDir is the numbered entries of one directory: a short list (most
// directories of the mount hold a handful), a map once it is long.
type inoDir struct {
	small []inoName
	big   map[string]uint64
}

type inoName struct {
	name string
	ino  uint64
}

// inoSmall is the longest list an inoDir keeps before it moves to a map.
const inoSmall = 8

func (d *inoDir) find(name string) (uint64, bool) {
	if d.big != nil {
		n, ok := d.big[name]
		return n, ok
	}
	for _, e := range d.small {
		if e.name == name {
			return e.ino, true
		}
	}
	return 0, false
}

func (d *inoDir) add(name string, n uint64) {
	if d.big == nil && len(d.small) < inoSmall {
		d.small = append(d.small, inoName{name, n})
		return
	}
	if d.big == nil {
		d.big = make(map[string]uint64, 2*inoSmall)
		for _, e := range d.small {
			d.big[e.name] = e.ino
		}
		d.small = nil
	}
	d.big[name] = n
}

func (d *inoDir) remove(name string) (uint64, bool) {
	if d.big != nil {
		n, ok := d.big[name]
		delete(d.big, name)
		return n, ok
	}
	for i, e := range d.small {
		if e.name == name {
			d.small = append(d.small[:i], d.small[i+1:]...)
			return e.ino, true
		}
	}
	return 0, false
}

// names lists the entries' names.
func (d *inoDir) names() []string {
	var out []string
	for _, e := range d.small {
		out = append(out, e.name)
	}
	for name := range d.big {
		out = append(out, name)
	}
	return out
}

// ino is the inode number of entry name of directory parent; isDir says
// whether the entry is a directory (whose own entries are numbered).
func (t *tree) ino(parent *gofs.Inode, name string, isDir bool) uint64 {
	return t.inos.get(parent.StableAttr().Ino, name, isDir)
}

func (tab *inoTable) get(parent uint64, name string, isDir bool) uint64 {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	tab.init()
	d, live := tab.dirs[parent]
	if n, ok := d.find(name); ok {
		return n
	}
	n := tab.next
	tab.next++
	if !live {
		return n // below a dropped directory: not recorded
	}
	d.add(name, n)
	tab.dirs[parent] = d
	tab.count++
	if isDir {
		tab.dirs[n] = inoDir{}
		tab.peak = max(tab.peak, len(tab.dirs))
	}
	return n
}

func (tab *inoTable) init() {
	if tab.dirs == nil {
		tab.dirs, tab.next = map[uint64]inoDir{fuse.FUSE_ROOT_ID: {}}, fuse.FUSE_ROOT_ID+1
	}
}

// trim drops the entries the catalog snapshot cur no longer reaches: VM
// directories of VMs without points and point directories of deleted
// points (by id and generation), each with everything below it. It looks
// at every point entry of each VM whose points changed from old to cur,
// not only at the points the change deleted, so an entry a request made
// from an older snapshot while the catalog changed goes at the VM's next
// change. VMs whose points did not change are not looked at (a sweep
// costs some 0.4 µs per point entry).
func (tab *inoTable) trim(old, cur *catalogSnap) {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	tab.init()
	root := tab.dirs[fuse.FUSE_ROOT_ID]
	var gone []string
	for _, vm := range root.names() {
		vmIno, _ := root.find(vm)
		v, ok := cur.vms[vm]
		if !ok {
			gone = append(gone, vm)
			continue
		}
		if ov := old.vms[vm]; ov != nil && samePoints(ov.points, v.points) {
			continue
		}
		var dead []string
		d := tab.dirs[vmIno]
		for _, name := range d.names() {
			if name == latestName {
				continue
			}
			if id, gen, ok := splitPointInoName(name); ok {
				if p, ok := v.point(id); ok && p.Gen == gen {
					continue
				}
			}
			dead = append(dead, name)
		}
		tab.dropAll(vmIno, dead)
	}
	tab.dropAll(fuse.FUSE_ROOT_ID, gone)
	// A Go map keeps the buckets of its largest size: rebuild dirs once
	// it holds a quarter of that.
	if len(tab.dirs)*4 < tab.peak {
		tab.dirs = shrunk(tab.dirs)
		tab.peak = len(tab.dirs)
	}
}

// dropAll drops entries names of directory dir, each with everything
// below it. A long directory that lost a quarter or more of its entries
// gets a map sized for the rest (Go maps never shrink).
func (tab *inoTable) dropAll(dir uint64, names []string) {
	if len(names) == 0 {
		return
	}
	for _, name := range names {
		tab.drop(dir, name)
	}
	if d := tab.dirs[dir]; d.big != nil && len(names)*4 >= len(d.big)+len(names) {
		d.big = shrunk(d.big)
		tab.dirs[dir] = d
	}
}

// drop removes entry name of directory dir, and everything below it.
func (tab *inoTable) drop(dir uint64, name string) {
	d := tab.dirs[dir]
	n, ok := d.remove(name)
	if !ok {
		return
	}
	tab.dirs[dir] = d
	tab.count--
	tab.dropBelow(n)
}

func (tab *inoTable) dropBelow(n uint64) {
	d, ok := tab.dirs[n]
	if !ok {
		return
	}
	delete(tab.dirs, n)
	for _, e := range d.small {
		tab.count--
		tab.dropBelow(e.ino)
	}
	for _, ch := range d.big {
		tab.count--
		tab.dropBelow(ch)
	}
}

// shrunk is a copy of m sized for what it holds (maps.Clone keeps the
// buckets of the original).
func shrunk[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// size is the number of entries in the table.
func (tab *inoTable) size() int {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return tab.count
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
		entries[i].Ino = t.ino(dir, entries[i].Name, entries[i].Mode&syscall.S_IFMT == syscall.S_IFDIR)
	}
	return entries
}

// child is the StableAttr of entry name of dir, of the given type.
func (t *tree) child(dir *gofs.Inode, name string, mode uint32) gofs.StableAttr {
	return gofs.StableAttr{Mode: mode, Ino: t.ino(dir, name, mode&syscall.S_IFMT == syscall.S_IFDIR)}
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

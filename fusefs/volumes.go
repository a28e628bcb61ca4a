package fusefs

import (
	"context"
	"sort"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// PointSource is what a VolumeProvider gets: every disk of a point.
type PointSource struct {
	Point blockmap.Point
	Disks []DiskSource
}

// VolumeDir is one directory of fs/ that holds volumes assembled across
// the disks of a point, e.g. "lvm" for LVM volume groups.
type VolumeDir struct {
	Name string
	Node gofs.InodeEmbedder // a directory node, as for FSProvider
}

// VolumeProvider builds the directories of fs/ that span disks (volume
// managers: fs/lvm/<vg>/<lv>/...). It is called at most once per point
// per mount, the first time fs/ is listed or a name in it that is not a
// disk is looked up, with a context that ends when the mount ends. It
// returns no directories when the point has no such volumes; an error is
// logged and leaves fs/ with the disks only. A panic is not recovered
// here: go-fuse's handler answers the request that ran the provider with
// EIO and logs the stack, and fs/ then shows the disks only. A name that
// equals a disk's name is dropped (the disk keeps it).
type VolumeProvider func(ctx context.Context, src PointSource) ([]VolumeDir, error)

// volEntry is the VolumeProvider's result for one point, built once.
type volEntry struct {
	once  sync.Once
	names []string
	nodes map[string]*gofs.Inode
}

// pointVolumes returns the volume directories of fs/ of a point.
func (t *tree) pointVolumes(ctx context.Context, parent *fsDir) *volEntry {
	if t.opts.VolumeProvider == nil {
		return &volEntry{}
	}
	p := parent.p
	key := pointKey{p.VM, p.Gen}
	t.fsMu.Lock()
	if t.volNodes == nil {
		t.volNodes = map[pointKey]*volEntry{}
	}
	e, ok := t.volNodes[key]
	if !ok {
		e = &volEntry{}
		t.volNodes[key] = e
	}
	t.fsMu.Unlock()
	e.once.Do(func() {
		e.nodes = map[string]*gofs.Inode{}
		dirs, err := t.callVolumeProvider(p)
		if err != nil {
			t.log.Error("volumes across the disks of a point", "vm", p.VM, "point", p.ID, "err", err)
			return
		}
		for _, d := range dirs {
			if _, isDisk := p.Disk(d.Name); isDisk || d.Node == nil || e.nodes[d.Name] != nil {
				t.log.Warn("volume directory name taken; not shown", "vm", p.VM, "point", p.ID, "name", d.Name)
				continue
			}
			e.nodes[d.Name] = parent.NewPersistentInode(ctx, d.Node, t.childDir(&parent.Inode, d.Name))
			e.names = append(e.names, d.Name)
		}
		sort.Strings(e.names)
	})
	return e
}

// callVolumeProvider runs the VolumeProvider. It does not recover: a
// provider's panic is answered EIO by go-fuse's handler (see
// VolumeProvider).
func (t *tree) callVolumeProvider(p blockmap.Point) ([]VolumeDir, error) {
	src := PointSource{Point: p}
	for _, d := range p.Disks {
		src.Disks = append(src.Disks, DiskSource{Point: p, Disk: d, Reader: &pointReaderAt{t: t, p: p, disk: d.Name}, Size: d.Size})
	}
	return t.opts.VolumeProvider(t.ctx, src)
}

// volumeEntries lists the volume directories of fs/ for a listing.
func (n *fsDir) volumeEntries(ctx context.Context) []fuse.DirEntry {
	var out []fuse.DirEntry
	for _, name := range n.t.pointVolumes(ctx, n).names {
		out = append(out, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR})
	}
	return out
}

// lookupVolume finds a volume directory of fs/ by name.
func (n *fsDir) lookupVolume(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := n.t.pointVolumes(ctx, n).nodes[name]
	if ch == nil {
		return nil, syscall.ENOENT
	}
	return ch, fillEntry(ctx, ch, out)
}

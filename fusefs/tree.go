package fusefs

import (
	"context"
	"log/slog"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// Cache timeouts. Point contents never change; the root and VM
// directories do when points are committed or deleted.
const (
	dirTimeout   = time.Second
	pointTimeout = 24 * time.Hour
)

// tree is the state shared by every node of one mount.
type tree struct {
	ctx     context.Context
	repo    Source
	opts    Options
	log     *slog.Logger
	cat     *catalogCache
	readers *readerCache
	around  *readAround
	uid     uint32
	gid     uint32
	root    *rootNode

	fsMu    sync.Mutex
	fsNodes map[readerKey]*fsEntry // FSProvider results, kept while their point exists (catalogChanged)
	// volNodes holds VolumeProvider results per point (fs/lvm, ...).
	volNodes map[pointKey]*volEntry
	inos     inoTable // inode numbers of the mount's own nodes (inos.go)
}

// fillAttr sets the attributes every node shares.
func (t *tree) fillAttr(a *fuse.Attr, mode uint32, size uint64, mtime time.Time) {
	a.Mode = mode
	a.Size = size
	a.Uid, a.Gid = t.uid, t.gid
	a.Nlink = 1
	if mode&syscall.S_IFDIR != 0 {
		a.Nlink = 2
	}
	a.Blksize = 4096
	a.SetTimes(&mtime, &mtime, &mtime)
}

// entry fills a lookup reply from a node's attributes and timeouts.
func entry(out *fuse.EntryOut, a fuse.Attr, entryTimeout, attrTimeout time.Duration) {
	out.Attr = a
	out.SetEntryTimeout(entryTimeout)
	out.SetAttrTimeout(attrTimeout)
}

// catalogChanged runs after every catalog reload: readers and guest
// filesystem nodes of deleted points are dropped, and the kernel is told
// to forget their directory entries. The inode numbers of what the
// catalog no longer reaches are dropped (inoTable.trim).
func (t *tree) catalogChanged(old, cur *catalogSnap) {
	t.inos.trim(old, cur)
	var gone []pointKey
	for k := range old.alive {
		if !cur.alive[k] {
			gone = append(gone, k)
		}
	}
	// The kernel caches symlink targets (EnableSymlinkCaching): when a
	// VM's newest point changes, drop the cached target of its latest link.
	var moved []string
	for name, v := range cur.vms {
		np, nok := v.latest()
		var op blockmap.Point
		var ook bool
		if ov, ok := old.vms[name]; ok {
			op, ook = ov.latest()
		}
		if nok != ook || np.Gen != op.Gen {
			moved = append(moved, name)
		}
	}
	if len(moved) > 0 {
		go t.invalidateLatest(moved)
	}
	isGone := func(k pointKey) bool { return !cur.alive[k] }
	// Guest filesystem nodes are swept at every change, not only when
	// points were deleted: a lookup in a deleted point still open (or
	// answered from the snapshot before) adds one after its deletion.
	t.fsMu.Lock()
	for k := range t.fsNodes {
		if isGone(k.pointKey) {
			delete(t.fsNodes, k)
		}
	}
	for k := range t.volNodes {
		if isGone(k) {
			delete(t.volNodes, k)
		}
	}
	t.fsMu.Unlock()
	if len(gone) == 0 {
		return
	}
	t.readers.forget(isGone)
	// Notifications must not run inside the request that triggered the
	// reload: the kernel may hold the directory lock it needs.
	go t.forgetEntries(old, cur, gone)
}

// invalidateLatest makes the kernel forget the cached target and entry of
// the latest links of the named VMs. It runs outside any request.
func (t *tree) invalidateLatest(vms []string) {
	if t.root == nil {
		return
	}
	root := t.root.EmbeddedInode()
	for _, name := range vms {
		vmInode := root.GetChild(name)
		if vmInode == nil {
			continue
		}
		if ch := vmInode.GetChild(latestName); ch != nil {
			ch.NotifyContent(0, 0)
		}
		vmInode.NotifyEntry(latestName)
	}
}

func (t *tree) forgetEntries(old, cur *catalogSnap, gone []pointKey) {
	if t.root == nil {
		return
	}
	root := t.root.EmbeddedInode()
	for _, k := range gone {
		vmInode := root.GetChild(k.VM)
		if _, still := cur.vms[k.VM]; !still {
			root.NotifyEntry(k.VM)
		}
		if vmInode == nil {
			continue
		}
		v := old.vms[k.VM]
		for _, p := range v.points {
			if p.Gen != k.Gen {
				continue
			}
			if ch := vmInode.GetChild(p.ID); ch != nil {
				if pd, ok := ch.Operations().(*pointDir); ok && pd.p.Gen == k.Gen {
					vmInode.RmChild(p.ID)
				}
			}
			vmInode.NotifyEntry(p.ID)
		}
	}
}

// newDirStream lists the directory dir: "." and "..", then entries in
// order (WithDots).
func newDirStream(dir *gofs.Inode, entries []fuse.DirEntry) gofs.DirStream {
	return gofs.NewListDirStream(WithDots(dir, entries))
}

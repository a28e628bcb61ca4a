package fusefs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// latestName is the symlink in every VM directory to its newest point.
const latestName = "latest"

// vmDir lists the points of one VM and the latest symlink.
type vmDir struct {
	gofs.Inode
	ReadOnly
	t    *tree
	name string
}

var (
	_ gofs.NodeLookuper  = (*vmDir)(nil)
	_ gofs.NodeReaddirer = (*vmDir)(nil)
	_ gofs.NodeGetattrer = (*vmDir)(nil)
)

// Getattr answers with a zero attribute timeout: the kernel caches the
// VM's listing and asks for its mtime at the start of every listing,
// which moves when points come or go (see noOpendirFS).
func (n *vmDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	snap := n.t.cat.current()
	mtime := snap.rootMtime
	count := 0
	if v, ok := snap.vms[n.name]; ok {
		mtime = v.mtime
		count = len(v.points)
	}
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, mtime)
	out.Nlink = uint32(2 + count)
	out.SetTimeout(0)
	return 0
}

func (n *vmDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	v, ok := n.t.cat.current().vms[n.name]
	if !ok {
		return newDirStream(&n.Inode, nil), 0
	}
	entries := make([]fuse.DirEntry, 0, len(v.points)+1)
	entries = append(entries, fuse.DirEntry{Name: latestName, Mode: syscall.S_IFLNK, Ino: n.t.ino(&n.Inode, latestName, false)})
	for _, p := range v.points {
		entries = append(entries, fuse.DirEntry{Name: p.ID, Mode: syscall.S_IFDIR, Ino: n.t.ino(&n.Inode, pointInoName(p), true)})
	}
	return newDirStream(&n.Inode, entries), 0
}

func (n *vmDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	v, ok := n.t.cat.current().vms[n.name]
	if !ok {
		return nil, syscall.ENOENT
	}
	if name == latestName {
		p, ok := v.latest()
		if !ok {
			return nil, syscall.ENOENT
		}
		ch := n.GetChild(name)
		if ch == nil {
			ch = n.NewInode(ctx, &latestLink{t: n.t, vm: n.name}, n.t.child(&n.Inode, latestName, syscall.S_IFLNK))
		}
		n.t.fillAttr(&out.Attr, syscall.S_IFLNK|0o777, uint64(len(p.ID)), p.Time)
		entry(out, out.Attr, dirTimeout, dirTimeout)
		return ch, 0
	}
	p, ok := v.point(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	ch := n.GetChild(name)
	if ch != nil {
		if pd, ok := ch.Operations().(*pointDir); !ok || pd.p.Gen != p.Gen {
			ch = nil
		}
	}
	if ch == nil {
		ch = n.NewInode(ctx, &pointDir{t: n.t, p: p}, n.t.childDir(&n.Inode, pointInoName(p)))
	}
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, p.Time)
	// A point never changes; when it is deleted, the mount tells the
	// kernel to drop its entry (tree.forgetEntries).
	entry(out, out.Attr, pointTimeout, pointTimeout)
	return ch, 0
}

// latestLink points to the newest point of a VM.
type latestLink struct {
	gofs.Inode
	ReadOnly
	t  *tree
	vm string
}

var (
	_ gofs.NodeReadlinker = (*latestLink)(nil)
	_ gofs.NodeGetattrer  = (*latestLink)(nil)
)

func (n *latestLink) target() (string, time.Time, bool) {
	v, ok := n.t.cat.current().vms[n.vm]
	if !ok {
		return "", time.Time{}, false
	}
	p, ok := v.latest()
	return p.ID, p.Time, ok
}

func (n *latestLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	id, _, ok := n.target()
	if !ok {
		return nil, syscall.ENOENT
	}
	return []byte(id), 0
}

func (n *latestLink) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	id, mtime, _ := n.target()
	n.t.fillAttr(&out.Attr, syscall.S_IFLNK|0o777, uint64(len(id)), mtime)
	out.SetTimeout(dirTimeout)
	return 0
}

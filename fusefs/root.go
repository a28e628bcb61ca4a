package fusefs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rootNode is the mount's root: one directory per VM with points.
type rootNode struct {
	gofs.Inode
	ReadOnly
	t *tree
}

var (
	_ gofs.NodeLookuper  = (*rootNode)(nil)
	_ gofs.NodeReaddirer = (*rootNode)(nil)
	_ gofs.NodeGetattrer = (*rootNode)(nil)
)

// Getattr answers with a zero attribute timeout: the kernel caches the
// root's listing and asks for its mtime at the start of every listing,
// which moves when VMs come or go (see noOpendirFS).
func (n *rootNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, n.t.cat.current().rootMtime)
	out.SetTimeout(0)
	return 0
}

func (n *rootNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	snap := n.t.cat.current()
	entries := make([]fuse.DirEntry, 0, len(snap.names))
	for _, name := range snap.names {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR})
	}
	return newDirStream(&n.Inode, n.t.numbered(&n.Inode, entries)), 0
}

func (n *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	snap := n.t.cat.current()
	if _, ok := snap.vms[name]; !ok {
		return nil, syscall.ENOENT
	}
	// A VM whose points were all deleted and that has points again is
	// another directory (its number was dropped, inoTable.trim).
	ino := n.t.ino(&n.Inode, name, true)
	ch := n.GetChild(name)
	if ch != nil && ch.StableAttr().Ino != ino {
		ch = nil
	}
	if ch == nil {
		ch = n.NewInode(ctx, &vmDir{t: n.t, name: name}, n.t.childDir(&n.Inode, name))
	}
	var a fuse.AttrOut
	ch.Operations().(*vmDir).Getattr(ctx, nil, &a)
	entry(out, a.Attr, dirTimeout, 0)
	return ch, 0
}

package fusefs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// disksDir holds <disk>.img and <disk>.vmdk for every disk of a point.
type disksDir struct {
	gofs.Inode
	ReadOnly
	t *tree
	p blockmap.Point
}

var (
	_ gofs.NodeLookuper       = (*disksDir)(nil)
	_ gofs.NodeReaddirer      = (*disksDir)(nil)
	_ gofs.NodeOpendirHandler = (*disksDir)(nil)
	_ gofs.NodeGetattrer      = (*disksDir)(nil)
)

func (n *disksDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, n.p.Time)
	out.SetTimeout(pointTimeout)
	return 0
}

func (n *disksDir) list() []fuse.DirEntry {
	var entries []fuse.DirEntry
	for _, d := range n.p.Disks {
		entries = append(entries, fuse.DirEntry{Name: d.Name + ".img", Mode: syscall.S_IFREG})
		if vmdkSafeName(d.Name) {
			entries = append(entries, fuse.DirEntry{Name: d.Name + ".vmdk", Mode: syscall.S_IFREG})
		}
	}
	return n.t.numbered(&n.Inode, entries)
}

func (n *disksDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return newDirStream(&n.Inode, n.list()), 0
}

func (n *disksDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return openCachedDir(&n.Inode, n.list())
}

func (n *disksDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	for _, d := range n.p.Disks {
		switch name {
		case d.Name + ".img":
			ch := n.GetChild(name)
			if ch == nil {
				ch = n.NewInode(ctx, &imgFile{t: n.t, p: n.p, disk: d}, n.t.childFile(&n.Inode, name))
			}
			return ch, fillEntry(ctx, ch, out)
		case d.Name + ".vmdk":
			if !vmdkSafeName(d.Name) {
				continue
			}
			ch := n.GetChild(name)
			if ch == nil {
				data := vmdkDescriptor(n.p, d)
				ch = n.NewInode(ctx, &contentFile{t: n.t, data: data, mtime: n.p.Time}, n.t.childFile(&n.Inode, name))
			}
			return ch, fillEntry(ctx, ch, out)
		}
	}
	return nil, syscall.ENOENT
}

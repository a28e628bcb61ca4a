package fusefs

import (
	"context"
	"slices"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// attachmentDirs are the directories a point's attachments make
// ("vm" for vm/config.json), sorted, without names the point directory
// uses itself.
func attachmentDirs(p blockmap.Point) []string {
	var dirs []string
	for _, a := range p.Attachments {
		dir, _, ok := strings.Cut(a.Name, "/")
		if !ok || dir == infoName || dir == disksName || dir == fsName || dir == bootName {
			continue
		}
		if !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// attachDir shows the attachments of a point under one directory
// (vm/config.json, vm/<name>.vmx, vm/<name>.nvram). Attachments are
// committed with the point and never change.
type attachDir struct {
	gofs.Inode
	ReadOnly
	t   *tree
	p   blockmap.Point
	dir string
}

var (
	_ gofs.NodeLookuper       = (*attachDir)(nil)
	_ gofs.NodeReaddirer      = (*attachDir)(nil)
	_ gofs.NodeOpendirHandler = (*attachDir)(nil)
	_ gofs.NodeGetattrer      = (*attachDir)(nil)
)

func (n *attachDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, n.p.Time)
	out.SetTimeout(pointTimeout)
	return 0
}

func (n *attachDir) list() []fuse.DirEntry {
	var out []fuse.DirEntry
	for _, a := range n.p.Attachments {
		if name, ok := strings.CutPrefix(a.Name, n.dir+"/"); ok {
			out = append(out, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG})
		}
	}
	return n.t.numbered(&n.Inode, out)
}

func (n *attachDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return newDirStream(&n.Inode, n.list()), 0
}

func (n *attachDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return openCachedDir(&n.Inode, n.list())
}

func (n *attachDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := n.GetChild(name)
	if ch == nil {
		full := n.dir + "/" + name
		if _, ok := n.p.Attachment(full); !ok {
			return nil, syscall.ENOENT
		}
		data, err := n.t.repo.Attachment(ctx, n.p, full)
		if err != nil && ctx.Err() != nil {
			// The kernel interrupted the request (a signal to the
			// reader) and the read from a remote was cancelled with it:
			// EINTR makes the reader's libc or runtime ask again, where
			// EIO would read as damaged data.
			return nil, syscall.EINTR
		}
		if err != nil {
			n.t.log.Error("read attachment", "vm", n.p.VM, "point", n.p.ID, "attachment", full, "err", err)
			return nil, syscall.EIO
		}
		ch = n.NewInode(ctx, &contentFile{t: n.t, data: data, mtime: n.p.Time}, n.t.childFile(&n.Inode, name))
	}
	return ch, fillEntry(ctx, ch, out)
}

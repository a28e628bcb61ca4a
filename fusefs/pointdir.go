package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// Names inside a point directory.
const (
	infoName  = "info.json"
	disksName = "disks"
	fsName    = "fs"
	bootName  = "boot"
)

// pointDir is one recovery point: info.json, disks/ and (with an
// FSProvider) fs/. Its content never changes.
type pointDir struct {
	gofs.Inode
	ReadOnly
	t *tree
	p blockmap.Point
}

var (
	_ gofs.NodeLookuper       = (*pointDir)(nil)
	_ gofs.NodeReaddirer      = (*pointDir)(nil)
	_ gofs.NodeOpendirHandler = (*pointDir)(nil)
	_ gofs.NodeGetattrer      = (*pointDir)(nil)
)

func (n *pointDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, n.p.Time)
	out.SetTimeout(pointTimeout)
	return 0
}

func (n *pointDir) list() []fuse.DirEntry {
	entries := []fuse.DirEntry{
		{Name: infoName, Mode: syscall.S_IFREG},
		{Name: disksName, Mode: syscall.S_IFDIR},
	}
	if n.t.opts.FSProvider != nil {
		entries = append(entries, fuse.DirEntry{Name: fsName, Mode: syscall.S_IFDIR})
	}
	for _, d := range attachmentDirs(n.p) {
		entries = append(entries, fuse.DirEntry{Name: d, Mode: syscall.S_IFDIR})
	}
	// boot/ is listed once a check ran; it can be looked up always
	if _, err := os.Stat(filepath.Join(n.t.opts.BootChecksDir, n.p.VM, n.p.ID)); err == nil {
		entries = append(entries, fuse.DirEntry{Name: bootName, Mode: syscall.S_IFDIR})
	}
	return n.t.numbered(&n.Inode, entries)
}

func (n *pointDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return newDirStream(&n.Inode, n.list()), 0
}

func (n *pointDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return openCachedDir(&n.Inode, n.list())
}

func (n *pointDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := n.GetChild(name)
	switch name {
	case infoName:
		if ch == nil {
			data, err := pointInfoJSON(n.p)
			if err != nil {
				n.t.log.Error("build info.json", "vm", n.p.VM, "point", n.p.ID, "err", err)
				return nil, syscall.EIO
			}
			ch = n.NewInode(ctx, &contentFile{t: n.t, data: data, mtime: n.p.Time}, n.t.childFile(&n.Inode, name))
		}
	case disksName:
		if ch == nil {
			ch = n.NewInode(ctx, &disksDir{t: n.t, p: n.p}, n.t.childDir(&n.Inode, name))
		}
	case fsName:
		if n.t.opts.FSProvider == nil {
			return nil, syscall.ENOENT
		}
		if ch == nil {
			ch = n.NewInode(ctx, &fsDir{t: n.t, p: n.p}, n.t.childDir(&n.Inode, name))
		}
	case bootName:
		if ch == nil {
			ch = n.NewInode(ctx, &bootDir{t: n.t, p: n.p}, n.t.childDir(&n.Inode, name))
		}
	default:
		if !slices.Contains(attachmentDirs(n.p), name) {
			return nil, syscall.ENOENT
		}
		if ch == nil {
			ch = n.NewInode(ctx, &attachDir{t: n.t, p: n.p, dir: name}, n.t.childDir(&n.Inode, name))
		}
	}
	return ch, fillEntry(ctx, ch, out)
}

// fillEntry fills a lookup reply from the child's own Getattr, with the
// long timeouts of point contents.
func fillEntry(ctx context.Context, ch *gofs.Inode, out *fuse.EntryOut) syscall.Errno {
	var a fuse.AttrOut
	if g, ok := ch.Operations().(gofs.NodeGetattrer); ok {
		if errno := g.Getattr(ctx, nil, &a); errno != 0 {
			return errno
		}
	}
	entry(out, a.Attr, pointTimeout, pointTimeout)
	return 0
}

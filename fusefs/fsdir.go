package fusefs

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// ErrorFileName is the file that stands in a directory of fs/ whose
// content cannot be shown and says why (fusefs and fusefs/guest).
const ErrorFileName = "ERROR.txt"

// fsDir is fs/ of a point: one directory per disk, built by the FSProvider.
type fsDir struct {
	gofs.Inode
	ReadOnly
	t *tree
	p blockmap.Point
}

var (
	_ gofs.NodeLookuper       = (*fsDir)(nil)
	_ gofs.NodeReaddirer      = (*fsDir)(nil)
	_ gofs.NodeOpendirHandler = (*fsDir)(nil)
	_ gofs.NodeGetattrer      = (*fsDir)(nil)
)

func (n *fsDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, n.p.Time)
	out.SetTimeout(pointTimeout)
	return 0
}

func (n *fsDir) list(ctx context.Context) []fuse.DirEntry {
	var entries []fuse.DirEntry
	for _, d := range n.p.Disks {
		entries = append(entries, fuse.DirEntry{Name: d.Name, Mode: syscall.S_IFDIR})
	}
	return n.t.numbered(&n.Inode, append(entries, n.volumeEntries(ctx)...))
}

func (n *fsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return newDirStream(&n.Inode, n.list(ctx)), 0
}

func (n *fsDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return openCachedDir(&n.Inode, n.list(ctx))
}

func (n *fsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, ok := n.p.Disk(name)
	if !ok {
		return n.lookupVolume(ctx, name, out)
	}
	ch := n.GetChild(name)
	if ch == nil {
		ch = n.t.diskFS(ctx, n, n.p, d)
	}
	if ch == nil {
		return nil, syscall.EIO // the FSProvider panicked (logged by go-fuse's handler)
	}
	var a fuse.AttrOut
	if g, ok := ch.Operations().(gofs.NodeGetattrer); ok {
		if errno := g.Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
	} else {
		n.t.fillAttr(&a.Attr, syscall.S_IFDIR|0o555, 0, n.p.Time)
	}
	entry(out, a.Attr, pointTimeout, pointTimeout)
	return ch, 0
}

// fsEntry is the node of one fs/<disk>, built once.
type fsEntry struct {
	once sync.Once
	in   *gofs.Inode
}

// diskFS returns the node of fs/<disk>, asking the FSProvider once per
// point and disk while the point exists (tree.catalogChanged drops the
// nodes of deleted points). Providers of different disks run
// concurrently. The node is nil for good once the provider has panicked.
func (t *tree) diskFS(ctx context.Context, parent *fsDir, p blockmap.Point, d blockmap.DiskInfo) *gofs.Inode {
	key := readerKey{pointKey{p.VM, p.Gen}, d.Name}
	t.fsMu.Lock()
	e, ok := t.fsNodes[key]
	if !ok {
		e = &fsEntry{}
		t.fsNodes[key] = e
	}
	t.fsMu.Unlock()
	e.once.Do(func() {
		node, err := t.callProvider(p, d)
		if err != nil {
			t.log.Error("guest filesystems of a disk", "vm", p.VM, "point", p.ID, "disk", d.Name, "err", err)
			msg := fmt.Sprintf("cairn cannot show the filesystems of disk %s of %s at %s:\n%v\n\nThe raw image is in ../../disks/%s.img.\n", d.Name, p.VM, p.ID, err, d.Name)
			node = &errorDir{t: t, p: p, text: []byte(msg)}
		}
		e.in = parent.NewPersistentInode(ctx, node, t.childDir(&parent.Inode, d.Name))
	})
	return e.in
}

// callProvider runs the FSProvider. It does not recover: a provider's
// panic is answered EIO by go-fuse's handler (see FSProvider).
func (t *tree) callProvider(p blockmap.Point, d blockmap.DiskInfo) (gofs.InodeEmbedder, error) {
	src := DiskSource{Point: p, Disk: d, Reader: &pointReaderAt{t: t, p: p, disk: d.Name}, Size: d.Size}
	node, err := t.opts.FSProvider(t.ctx, src)
	if err == nil && node == nil {
		err = fmt.Errorf("no filesystem view")
	}
	return node, err
}

// errorDir is a directory holding only ERROR.txt.
type errorDir struct {
	gofs.Inode
	ReadOnly
	t    *tree
	p    blockmap.Point
	text []byte
}

var (
	_ gofs.NodeLookuper       = (*errorDir)(nil)
	_ gofs.NodeReaddirer      = (*errorDir)(nil)
	_ gofs.NodeOpendirHandler = (*errorDir)(nil)
	_ gofs.NodeGetattrer      = (*errorDir)(nil)
)

func (n *errorDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, n.p.Time)
	out.SetTimeout(pointTimeout)
	return 0
}

func (n *errorDir) list() []fuse.DirEntry {
	return n.t.numbered(&n.Inode, []fuse.DirEntry{{Name: ErrorFileName, Mode: syscall.S_IFREG}})
}

func (n *errorDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return newDirStream(&n.Inode, n.list()), 0
}

func (n *errorDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return openCachedDir(&n.Inode, n.list())
}

func (n *errorDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name != ErrorFileName {
		return nil, syscall.ENOENT
	}
	ch := n.GetChild(name)
	if ch == nil {
		ch = n.NewInode(ctx, &contentFile{t: n.t, data: n.text, mtime: n.p.Time}, n.t.childFile(&n.Inode, name))
	}
	return ch, fillEntry(ctx, ch, out)
}

package fusefs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
)

// bootFiles are the files of a boot check shown in <point>/boot/.
var bootFiles = []string{"result.json", "screenshot.png"}

// bootTimeout: boot check results are replaced by the next check, so
// they are not cached like the point's contents.
const bootTimeout = time.Second

// bootDir shows the last boot check of a point, kept beside the point in
// <BootChecksDir>/<vm>/<point>/ (cairn verify-boot writes it): a point
// itself never changes. It is empty while no check has run.
type bootDir struct {
	gofs.Inode
	ReadOnly
	t *tree
	p blockmap.Point
}

var (
	_ gofs.NodeLookuper  = (*bootDir)(nil)
	_ gofs.NodeReaddirer = (*bootDir)(nil)
	_ gofs.NodeGetattrer = (*bootDir)(nil)
)

func (n *bootDir) dir() string {
	return filepath.Join(n.t.opts.BootChecksDir, n.p.VM, n.p.ID)
}

func (n *bootDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFDIR|0o555, 0, n.p.Time)
	out.SetTimeout(bootTimeout)
	return 0
}

func (n *bootDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var entries []fuse.DirEntry
	for _, name := range bootFiles {
		if _, err := os.Stat(filepath.Join(n.dir(), name)); err == nil {
			entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG})
		}
	}
	return newDirStream(&n.Inode, n.t.numbered(&n.Inode, entries)), 0
}

func (n *bootDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	known := false
	for _, f := range bootFiles {
		known = known || f == name
	}
	if !known {
		return nil, syscall.ENOENT
	}
	path := filepath.Join(n.dir(), name)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, syscall.ENOENT
	}
	ch := n.NewInode(ctx, &bootFile{t: n.t, path: path}, n.t.childFile(&n.Inode, name))
	n.t.fillAttr(&out.Attr, syscall.S_IFREG|0o444, uint64(fi.Size()), fi.ModTime())
	out.SetEntryTimeout(bootTimeout)
	out.SetAttrTimeout(bootTimeout)
	return ch, 0
}

// bootFile is one file of a boot check, read whole when opened.
type bootFile struct {
	gofs.Inode
	ReadOnly
	t    *tree
	path string
}

var (
	_ gofs.NodeOpener    = (*bootFile)(nil)
	_ gofs.NodeGetattrer = (*bootFile)(nil)
	_ gofs.NodeReader    = (*bootFile)(nil)
)

func (n *bootFile) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fi, err := os.Stat(n.path)
	if err != nil {
		return syscall.ENOENT
	}
	n.t.fillAttr(&out.Attr, syscall.S_IFREG|0o444, uint64(fi.Size()), fi.ModTime())
	out.SetTimeout(bootTimeout)
	return 0
}

func (n *bootFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := ReadOnlyOpen(flags); errno != 0 {
		return nil, 0, errno
	}
	data, err := os.ReadFile(n.path)
	if err != nil {
		return nil, 0, syscall.ENOENT
	}
	return &bytesHandle{data: data}, fuse.FOPEN_DIRECT_IO, 0
}

// Read serves a read from the data read at OPEN or, when the kernel opened
// the file by itself (noopen.go), from the file now. Such a file is in
// the page cache, but a check that replaces it is a new inode: the lookup
// after bootTimeout gives a new node.
func (n *bootFile) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := f.(*bytesHandle); ok {
		return h.Read(ctx, dest, off)
	}
	if off < 0 {
		return nil, syscall.EINVAL
	}
	file, err := os.Open(n.path)
	if err != nil {
		return nil, syscall.ENOENT
	}
	defer file.Close()
	got, err := file.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// bytesHandle serves reads from data read at open.
type bytesHandle struct{ data []byte }

var _ gofs.FileReader = (*bytesHandle)(nil)

func (h *bytesHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.data[off:min(off+int64(len(dest)), int64(len(h.data)))]), 0
}

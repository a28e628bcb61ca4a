package fusefs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// contentFile is a small read-only file held in memory (info.json, the
// VMDK descriptors, ERROR.txt).
type contentFile struct {
	gofs.Inode
	ReadOnly
	t     *tree
	data  []byte
	mtime time.Time
}

var (
	_ gofs.NodeOpener    = (*contentFile)(nil)
	_ gofs.NodeReader    = (*contentFile)(nil)
	_ gofs.NodeGetattrer = (*contentFile)(nil)
)

func (n *contentFile) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFREG|0o444, uint64(len(n.data)), n.mtime)
	out.Blocks = (uint64(len(n.data)) + 511) / 512
	out.SetTimeout(pointTimeout)
	return 0
}

func (n *contentFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := ReadOnlyOpen(flags); errno != 0 {
		return nil, 0, errno
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *contentFile) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= int64(len(n.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(n.data)))
	return fuse.ReadResultData(n.data[off:end]), 0
}

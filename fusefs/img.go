package fusefs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
)

// imgFile is disks/<disk>.img: the raw disk as it was at the point.
type imgFile struct {
	gofs.Inode
	ReadOnly
	t    *tree
	p    blockmap.Point
	disk blockmap.DiskInfo
	// dataBytes is the size of the disk's data extents once a reader was
	// opened (-1 before): st_blocks reports it, so du and cp see holes.
	dataBytes atomic.Int64
	dataOnce  sync.Once
	warned    atomic.Bool // a refused read of a deleted point was logged
}

var (
	_ gofs.NodeOpener    = (*imgFile)(nil)
	_ gofs.NodeGetattrer = (*imgFile)(nil)
	_ gofs.NodeReader    = (*imgFile)(nil)
	_ gofs.NodeLseeker   = (*imgFile)(nil)
)

func (n *imgFile) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.fillAttr(&out.Attr, syscall.S_IFREG|0o444, uint64(n.disk.Size), n.p.Time)
	out.Blocks = uint64(n.dataBytes.Load()+511) / 512
	out.SetTimeout(pointTimeout)
	return 0
}

func (n *imgFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := ReadOnlyOpen(flags); errno != 0 {
		return nil, 0, errno
	}
	key := pointKey{n.p.VM, n.p.Gen}
	if !n.t.cat.alive(key) {
		return nil, 0, syscall.ENOENT
	}
	e, err := n.t.readers.acquire(n.p, n.disk.Name)
	if err != nil {
		n.t.log.Error("open disk image", "vm", n.p.VM, "point", n.p.ID, "disk", n.disk.Name, "err", err)
		return nil, 0, syscall.EIO
	}
	n.dataOnce.Do(func() { n.dataBytes.Store(e.dr.DataBytes()) })
	h := &imgHandle{n: n, e: e, key: key}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// borrow returns a handle for one request of a file opened without an
// OPEN request (noopen.go): it borrows the shared reader, which done gives
// back.
func (n *imgFile) borrow() (h *imgHandle, done func(), errno syscall.Errno) {
	key := pointKey{n.p.VM, n.p.Gen}
	if !n.t.cat.alive(key) {
		// Say why once: the reader only sees "Input/output error".
		if n.warned.CompareAndSwap(false, true) {
			n.t.log.Warn("reads of a deleted recovery point are refused (EIO)", "vm", n.p.VM, "point", n.p.ID, "disk", n.disk.Name)
		}
		return nil, nil, syscall.EIO
	}
	e, err := n.t.readers.acquire(n.p, n.disk.Name)
	if err != nil {
		n.t.log.Error("open disk image", "vm", n.p.VM, "point", n.p.ID, "disk", n.disk.Name, "err", err)
		return nil, nil, syscall.EIO
	}
	n.dataOnce.Do(func() { n.dataBytes.Store(e.dr.DataBytes()) })
	return &imgHandle{n: n, e: e, key: key}, func() { n.t.readers.release(e) }, 0
}

// Read serves a read: through the handle of an OPEN, or with a reader
// borrowed for this read when the kernel opened the file by itself.
func (n *imgFile) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := f.(*imgHandle); ok {
		return h.Read(ctx, dest, off)
	}
	h, done, errno := n.borrow()
	if errno != 0 {
		return nil, errno
	}
	defer done()
	return h.Read(ctx, dest, off)
}

// Lseek finds data and holes, as Read through a handle or a borrowed reader.
func (n *imgFile) Lseek(ctx context.Context, f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	if h, ok := f.(*imgHandle); ok {
		return h.Lseek(ctx, off, whence)
	}
	h, done, errno := n.borrow()
	if errno != 0 {
		return 0, errno
	}
	defer done()
	return h.Lseek(ctx, off, whence)
}

// imgHandle is an open disk image; it holds a shared reader.
type imgHandle struct {
	n        *imgFile
	e        *readerEntry
	key      pointKey
	released atomic.Bool
}

var (
	_ gofs.FileReader   = (*imgHandle)(nil)
	_ gofs.FileLseeker  = (*imgHandle)(nil)
	_ gofs.FileReleaser = (*imgHandle)(nil)
)

func (h *imgHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	ra := h.n.t.around
	if start, end, ok := ra.span(off, len(dest), h.n.disk.Size); ok {
		if res, errno, ok := h.readAround(dest, off, start, end); ok {
			return res, errno
		}
		// A failed read of the blocks around is retried as asked: only
		// the requested bytes decide the answer (EIO names their block).
	}
	n, err := h.e.dr.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		if errno := h.checkAlive(off); errno != 0 {
			return nil, errno // released by a prune, not damaged
		}
		return nil, h.n.t.readError(h.n.p, h.n.disk.Name, off, err)
	}
	if errno := h.checkAlive(off); errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readAround answers a small read from the whole blocks around it and
// gives the rest of those blocks to the kernel's page cache. ok is false
// when the blocks could not be read; the caller then reads as asked.
func (h *imgHandle) readAround(dest []byte, off, start, end int64) (res fuse.ReadResult, errno syscall.Errno, ok bool) {
	ra := h.n.t.around
	bufp := ra.bufs.Get().(*[]byte)
	buf := (*bufp)[:end-start]
	got, err := h.e.dr.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		ra.bufs.Put(bufp)
		return nil, 0, false
	}
	if errno := h.checkAlive(off); errno != 0 {
		ra.bufs.Put(bufp)
		return nil, errno, true
	}
	before := int(off - start)
	n := copy(dest, buf[min(before, got):got])
	if before+len(dest) <= got {
		ra.store(&h.n.Inode, bufp, start, off, len(dest), got)
	} else {
		ra.bufs.Put(bufp)
	}
	return fuse.ReadResultData(dest[:n]), 0, true
}

// checkAlive refuses the bytes just read when the point has been deleted
// meanwhile: pruning may already have released them. It runs after every
// read.
func (h *imgHandle) checkAlive(off int64) syscall.Errno {
	if h.n.t.cat.alive(h.key) {
		return 0
	}
	if h.n.warned.CompareAndSwap(false, true) {
		h.n.t.log.Warn("reads of a deleted recovery point are refused (EIO)", "vm", h.n.p.VM, "point", h.n.p.ID, "disk", h.n.disk.Name, "offset", off)
	}
	return syscall.EIO
}

func (h *imgHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	var (
		pos int64
		err error
	)
	switch whence {
	case unix.SEEK_DATA:
		pos, err = h.e.dr.NextData(int64(off))
	case unix.SEEK_HOLE:
		pos, err = h.e.dr.NextHole(int64(off))
	default:
		return 0, syscall.EINVAL
	}
	if errors.Is(err, blockmap.ErrNoData) {
		return 0, syscall.ENXIO
	}
	if err != nil {
		return 0, syscall.EIO
	}
	return uint64(pos), 0
}

func (h *imgHandle) Release(ctx context.Context) syscall.Errno {
	if h.released.CompareAndSwap(false, true) {
		h.n.t.readers.release(h.e)
	}
	return 0
}

// readError maps a read failure to an errno and logs it with its place.
func (t *tree) readError(p blockmap.Point, disk string, off int64, err error) syscall.Errno {
	var be *blockmap.BlockError
	switch {
	case errors.Is(err, os.ErrClosed), errors.Is(err, blockmap.ErrPointDeleted):
		t.log.Warn("read of a deleted recovery point refused", "vm", p.VM, "point", p.ID, "disk", disk, "offset", off)
	case errors.As(err, &be):
		t.log.Error("disk image read failed", "vm", be.VM, "point", be.Point, "disk", be.Disk, "offset", be.Offset,
			"generation", be.Gen, "corrupt", errors.Is(err, blockmap.ErrCorrupt), "err", be.Err)
	default:
		t.log.Error("disk image read failed", "vm", p.VM, "point", p.ID, "disk", disk, "offset", off, "err", err)
	}
	return syscall.EIO
}

// pointReaderAt is the io.ReaderAt an FSProvider gets: it borrows the
// shared reader for each call, so it never holds a closed one.
type pointReaderAt struct {
	t    *tree
	p    blockmap.Point
	disk string
}

func (r *pointReaderAt) ReadAt(b []byte, off int64) (int, error) {
	key := pointKey{r.p.VM, r.p.Gen}
	if !r.t.cat.alive(key) {
		return 0, ErrPointGone
	}
	e, err := r.t.readers.acquire(r.p, r.disk)
	if err != nil {
		return 0, err
	}
	defer r.t.readers.release(e)
	n, err := e.dr.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, err
	}
	if !r.t.cat.alive(key) {
		return 0, ErrPointGone
	}
	return n, err
}

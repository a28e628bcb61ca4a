package fusefs

import (
	"container/list"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxDirCursors bounds the directory listings kept open between READDIR
// requests (listings that were abandoned before their end).
const maxDirCursors = 256

// noOpendirFS makes the kernel skip OPENDIR and RELEASEDIR altogether:
// answered ENOSYS to an OPENDIR, a kernel that advertises
// FUSE_NO_OPENDIR_SUPPORT (Linux >= 5.1) stops sending both for the whole
// mount and opens every directory as if FOPEN_KEEP_CACHE|FOPEN_CACHE_DIR
// had been answered. Walking a large tree (ls -lR) then costs no request
// per directory once the listings are cached.
//
// The kernel then sends READDIR with file handle 0, which go-fuse's node
// bridge cannot list: for those, noOpendirFS opens a listing itself and
// keeps it for the requests that continue it (a listing longer than one
// reply), releasing it at the end of the listing. A READDIR at offset 0
// always starts a fresh listing, so changed directories (the root and
// the VM directories) are listed anew.
//
// Every directory's listing is cached by the kernel. It starts over when
// the directory's mtime changes, which the kernel checks at the start of
// a listing once the attributes have expired: the root and VM
// directories have zero attribute timeouts and an mtime that moves with
// every change of their entries.
type noOpendirFS struct {
	fuse.RawFileSystem
	server atomic.Pointer[fuse.Server]

	mu      sync.Mutex
	cursors map[uint64]*dirCursor // by node id: listings between requests
	lru     list.List             // of *dirCursor, front = most recent
}

// dirCursor is an open listing of one directory in go-fuse's bridge.
type dirCursor struct {
	node uint64
	fh   uint64
	el   *list.Element
}

func newNoOpendirFS(inner fuse.RawFileSystem) *noOpendirFS {
	return &noOpendirFS{RawFileSystem: inner, cursors: map[uint64]*dirCursor{}}
}

func (f *noOpendirFS) Init(s *fuse.Server) {
	f.server.Store(s)
	f.RawFileSystem.Init(s)
}

// active reports whether the kernel supports opening directories without
// OPENDIR.
func (f *noOpendirFS) active() bool {
	s := f.server.Load()
	return s != nil && s.KernelSettings().Flags64()&fuse.CAP_NO_OPENDIR_SUPPORT != 0
}

func (f *noOpendirFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if f.active() {
		return fuse.ENOSYS
	}
	return f.RawFileSystem.OpenDir(cancel, in, out)
}

func (f *noOpendirFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return f.RawFileSystem.ReadDir(cancel, in, out)
	}
	return f.readDir(cancel, in, out, f.RawFileSystem.ReadDir)
}

func (f *noOpendirFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return f.RawFileSystem.ReadDirPlus(cancel, in, out)
	}
	return f.readDir(cancel, in, out, f.RawFileSystem.ReadDirPlus)
}

// readDir answers a READDIR(PLUS) without a file handle through a listing
// of its own.
func (f *noOpendirFS) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	read func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	c := f.take(in.NodeId, in.Offset != 0)
	if c == nil {
		var oo fuse.OpenOut
		open := fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
		if st := f.RawFileSystem.OpenDir(cancel, &open, &oo); !st.Ok() {
			return st
		}
		c = &dirCursor{node: in.NodeId, fh: oo.Fh}
	}
	req := *in
	req.Fh = c.fh
	before := out.Offset
	st := read(cancel, &req, out)
	if !st.Ok() || out.Offset == before {
		// An error or the end of the listing.
		f.release(c)
		return st
	}
	f.park(c)
	return st
}

// take returns the parked listing of a node, if reuse is allowed and there
// is one; a listing that is not reused is released.
func (f *noOpendirFS) take(node uint64, reuse bool) *dirCursor {
	f.mu.Lock()
	c := f.cursors[node]
	if c != nil {
		delete(f.cursors, node)
		f.lru.Remove(c.el)
	}
	f.mu.Unlock()
	if c != nil && !reuse {
		f.release(c)
		return nil
	}
	return c
}

// park keeps a listing for the request that continues it.
func (f *noOpendirFS) park(c *dirCursor) {
	var drop []*dirCursor
	f.mu.Lock()
	if old := f.cursors[c.node]; old != nil {
		f.lru.Remove(old.el)
		drop = append(drop, old)
	}
	f.cursors[c.node] = c
	c.el = f.lru.PushFront(c)
	for f.lru.Len() > maxDirCursors {
		old := f.lru.Remove(f.lru.Back()).(*dirCursor)
		delete(f.cursors, old.node)
		drop = append(drop, old)
	}
	f.mu.Unlock()
	for _, old := range drop {
		f.release(old)
	}
}

func (f *noOpendirFS) release(c *dirCursor) {
	f.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: c.node}, Fh: c.fh})
}

// Forget releases the node's parked listing first: go-fuse drops a
// forgotten node, and a handle of it could not be released afterwards.
func (f *noOpendirFS) Forget(node, nlookup uint64) {
	if c := f.take(node, true); c != nil {
		f.release(c)
	}
	f.RawFileSystem.Forget(node, nlookup)
}

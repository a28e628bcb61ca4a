package fusefs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// listDirHandle is an open directory whose entries never change (the
// directories inside a point). Opened with FOPEN_CACHE_DIR, the kernel
// keeps the listing, so repeated listings cost no READDIR requests.
type listDirHandle struct {
	mu      sync.Mutex
	entries []fuse.DirEntry
	pos     int
}

// openCachedDir answers OPENDIR for a directory with fixed entries.
func openCachedDir(entries []fuse.DirEntry) (*listDirHandle, uint32, syscall.Errno) {
	return &listDirHandle{entries: entries}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// OpenCachedDir answers OPENDIR for a directory whose entries never change
// (anything inside a recovery point, such as a guest directory): the
// kernel keeps the listing, so later listings cost no READDIR request.
// FSProvider nodes use it from their OpendirHandle.
func OpenCachedDir(entries []fuse.DirEntry) (gofs.FileHandle, uint32, syscall.Errno) {
	return openCachedDir(entries)
}

func (h *listDirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pos >= len(h.entries) {
		return nil, 0
	}
	e := h.entries[h.pos]
	h.pos++
	e.Off = uint64(h.pos)
	return &e, 0
}

func (h *listDirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pos = int(min(off, uint64(len(h.entries))))
	return 0
}

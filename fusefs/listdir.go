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

// WithDots returns entries after the "." and ".." entries of dir, as a
// kernel filesystem lists a directory: "." with dir's own inode number
// and ".." with its parent's (dir's own for the mount's root, as ext4
// answers for its root), both of type directory. The inode numbers are
// the ones stat reports (go-fuse's StableAttr.Ino: a guest directory's
// mount inode number, an automatic one for the mount's own directories),
// so ls -ai and stat agree. The listing's offsets follow from the order:
// "." is at offset 1, ".." at 2 and the first entry at 3.
//
// In a READDIRPLUS answer "." and ".." carry no attributes: go-fuse's
// bridge leaves their entry zero (node id 0) without a lookup, and the
// kernel's fuse_direntplus_link skips them anyway, so they create no
// dentry and cost no LOOKUP.
func WithDots(dir *gofs.Inode, entries []fuse.DirEntry) []fuse.DirEntry {
	self := dir.StableAttr().Ino
	parent := self
	if _, p := dir.Parent(); p != nil {
		parent = p.StableAttr().Ino
	}
	out := make([]fuse.DirEntry, 0, len(entries)+2)
	out = append(out,
		fuse.DirEntry{Name: ".", Ino: self, Mode: syscall.S_IFDIR},
		fuse.DirEntry{Name: "..", Ino: parent, Mode: syscall.S_IFDIR})
	return append(out, entries...)
}

// isDot reports whether name is "." or "..".
func isDot(name string) bool { return name == "." || name == ".." }

// openCachedDir answers OPENDIR for the directory dir with fixed entries
// (without "." and "..", which it adds).
func openCachedDir(dir *gofs.Inode, entries []fuse.DirEntry) (*listDirHandle, uint32, syscall.Errno) {
	return &listDirHandle{entries: WithDots(dir, entries)}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// OpenCachedDir answers OPENDIR for the directory dir whose entries never
// change (anything inside a recovery point, such as a guest directory):
// the kernel keeps the listing, so later listings cost no READDIR request.
// entries are the directory's names without "." and "..": the listing
// starts with those (WithDots). FSProvider nodes use it from their
// OpendirHandle.
func OpenCachedDir(dir *gofs.Inode, entries []fuse.DirEntry) (gofs.FileHandle, uint32, syscall.Errno) {
	return openCachedDir(dir, entries)
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

// DirEntryLookup answers the lookup of one listed entry for READDIRPLUS:
// the entry as listed (name and type), out to fill. An error (any
// errno) leaves the entry without attributes (node id 0): the kernel
// then lists the name but creates no inode for it, and looks it up
// when it is used.
type DirEntryLookup func(ctx context.Context, e fuse.DirEntry, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno)

// lookupDirHandle is a listDirHandle whose READDIRPLUS entries come from
// its own lookup function (gofs.FileLookuper) instead of the node's Lookup.
type lookupDirHandle struct {
	*listDirHandle
	lookup DirEntryLookup
}

// OpenCachedDirLookup is OpenCachedDir for a directory that decides per
// entry what a READDIRPLUS answer carries (see DirEntryLookup). lookup is
// never called for "." and "..".
func OpenCachedDirLookup(dir *gofs.Inode, entries []fuse.DirEntry, lookup DirEntryLookup) (gofs.FileHandle, uint32, syscall.Errno) {
	h, flags, errno := openCachedDir(dir, entries)
	return &lookupDirHandle{listDirHandle: h, lookup: lookup}, flags, errno
}

var _ gofs.FileLookuper = (*lookupDirHandle)(nil)

// Lookup is go-fuse's READDIRPLUS lookup of the entry Readdirent produced
// last (or, after an interrupted request, one produced earlier).
func (h *lookupDirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if isDot(name) {
		// go-fuse's bridge does not ask for these; should it, they stay
		// without attributes (node id 0), as the kernel expects.
		return nil, syscall.ENOENT
	}
	e := fuse.DirEntry{Name: name}
	h.mu.Lock()
	if h.pos > 0 && h.entries[h.pos-1].Name == name {
		e = h.entries[h.pos-1]
	} else {
		for _, x := range h.entries {
			if x.Name == name {
				e = x
				break
			}
		}
	}
	h.mu.Unlock()
	return h.lookup(ctx, e, out)
}

package guest

import (
	"errors"
	"io"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/cairnbackup/cairn/partinfo"
)

// Store-ahead: a tar (or cp -r, rsync) of a tree reads the files of a
// directory one after another in listing order, and each small file costs
// a READ round trip that waits for the one before. When a file is read
// from its start, the mount pushes the contents of the next files of the
// same directory into the kernel's page cache (FUSE NOTIFY_STORE) from a
// background worker, so the reader finds them cached and sends no READ.
// The contents of a point never change and files are opened without OPEN
// (page cache kept), so pushed pages stay valid. A walk that reads no
// file (find, ls -lR) triggers nothing. Only small regular files are
// pushed; larger ones are left to the kernel's readahead.
const (
	storeAheadFiles   = 32        // entries claimed past the file read
	storeAheadMaxFile = 256 << 10 // larger files are not pushed
)

// storer runs at most one store-ahead worker per volume: more would only
// compete with the reader's own requests on a busy machine.
type storer struct {
	busy chan struct{}
}

func newStorer() *storer { return &storer{busy: make(chan struct{}, 1)} }

// storeAhead starts pushing the files after n in its directory's listing,
// unless a push is already running.
func (n *guestNode) storeAhead(st *volState) {
	s := st.cache.store
	if s == nil {
		return
	}
	select {
	case s.busy <- struct{}{}:
	default:
		return
	}
	name, parent := n.Inode.Parent()
	var entries []gofsEntry
	if parent != nil {
		if p, ok := parent.Operations().(*guestNode); ok {
			for _, e := range st.cache.claimAfter(p.ino, name, storeAheadFiles) {
				if ch := parent.GetChild(e.Name); ch != nil {
					entries = append(entries, gofsEntry{ch, e.Ino})
				}
			}
		}
	}
	if len(entries) == 0 {
		<-s.busy
		return
	}
	go func() {
		defer func() { <-s.busy }()
		for _, e := range entries {
			store(st.fs, e.inode, e.ino)
		}
	}()
}

type gofsEntry struct {
	inode *gofs.Inode
	ino   uint64
}

// store pushes one small regular file whole into the kernel's cache; any
// failure leaves it to the kernel's READ (never a partial or wrong page).
func store(fsys partinfo.Filesystem, in *gofs.Inode, ino uint64) {
	a, err := fsys.Stat(ino)
	if err != nil || !a.Mode.IsRegular() || a.Size <= 0 || a.Size > storeAheadMaxFile {
		return
	}
	buf := make([]byte, a.Size)
	m, err := fsys.ReadAt(ino, buf, 0)
	if (err != nil && !errors.Is(err, io.EOF)) || m != len(buf) {
		return
	}
	in.WriteCache(0, buf)
}

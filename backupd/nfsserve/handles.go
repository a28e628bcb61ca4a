package nfsserve

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"path"
	"sync"

	"github.com/go-git/go-billy/v5"
	nfs "github.com/willscott/go-nfs"
	"golang.org/x/sys/unix"
)

// handleLen is the length of a file handle: 4 bytes naming the session,
// 12 bytes of the SHA-256 of the file's path. A handle depends only on the
// session and the path, so it stays valid when the export is restarted
// (the client holds handles across a server restart).
const handleLen = 16

// handler is go-nfs's Handler for one session: every mount sees the
// session's tree; handles are derived from paths (see handleLen).
type handler struct {
	fs      *sessionFS
	scratch string // the scratch directory's path, for FSSTAT
	id      [4]byte
	mu      sync.Mutex
	paths   map[[handleLen]byte][]string
	learned bool // the tree was walked (learnOnce)
	walks   int  // tree walks made
}

// learnOnce reports whether the tree is still to be walked for handles
// of before a restart (the first time only).
func (h *handler) learnOnce() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.learned {
		return false
	}
	h.learned = true
	return true
}

// ErrStaleHandle means a client used a handle of a path that no longer
// exists (or of another session).
var ErrStaleHandle = errors.New("stale NFS file handle")

func newHandler(fs *sessionFS, scratch, session string) *handler {
	h := &handler{fs: fs, scratch: scratch, paths: map[[handleLen]byte][]string{}}
	sum := sha256.Sum256([]byte(session))
	copy(h.id[:], sum[:4])
	h.ToHandle(fs, nil)
	return h
}

// Mount answers MNT on the NFS port (go-nfs serves MOUNT there too; the
// Go client mounts that way): the same paths as the MOUNT server.
func (h *handler) Mount(ctx context.Context, c net.Conn, req nfs.MountRequest) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
	if !mountable(string(req.Dirpath)) {
		return nfs.MountStatusErrNoEnt, nil, nil
	}
	return nfs.MountStatusOk, h.fs, []nfs.AuthFlavor{nfs.AuthFlavorUnix, nfs.AuthFlavorNull}
}

func (h *handler) Change(billy.Filesystem) billy.Change { return h.fs }

func (h *handler) FSStat(ctx context.Context, _ billy.Filesystem, s *nfs.FSStat) error {
	var st unix.Statfs_t
	if err := unix.Statfs(h.scratch, &st); err != nil {
		return err
	}
	bs := uint64(st.Bsize)
	s.TotalSize, s.FreeSize, s.AvailableSize = st.Blocks*bs, st.Bfree*bs, st.Bavail*bs
	s.TotalFiles, s.FreeFiles, s.AvailableFiles = st.Files, st.Ffree, st.Ffree
	return nil
}

func (h *handler) key(p []string) [handleLen]byte {
	var k [handleLen]byte
	copy(k[:4], h.id[:])
	sum := sha256.Sum256([]byte(path.Join(p...)))
	copy(k[4:], sum[:handleLen-4])
	return k
}

func (h *handler) ToHandle(_ billy.Filesystem, p []string) []byte {
	k := h.key(p)
	h.mu.Lock()
	if _, ok := h.paths[k]; !ok {
		h.paths[k] = append([]string(nil), p...)
	}
	h.mu.Unlock()
	return k[:]
}

func (h *handler) FromHandle(fh []byte) (billy.Filesystem, []string, error) {
	if len(fh) != handleLen {
		return nil, nil, fmt.Errorf("handle of %d bytes: %w", len(fh), ErrStaleHandle)
	}
	k := [handleLen]byte(fh)
	h.mu.Lock()
	p, ok := h.paths[k]
	h.mu.Unlock()
	if !ok && h.learnOnce() {
		// a handle given out before a restart: learn the tree's paths
		// (once: every path made since gets its handle when it is made,
		// and a walk per unknown handle would let a client make the
		// export walk the whole tree with each forged handle)
		h.walk(nil, 0)
		h.mu.Lock()
		p, ok = h.paths[k]
		h.mu.Unlock()
	}
	if !ok {
		return nil, nil, ErrStaleHandle
	}
	return h.fs, append([]string(nil), p...), nil
}

// walk gives every path under dir a handle (at most 16 levels deep).
func (h *handler) walk(dir []string, depth int) {
	if depth > 16 {
		return
	}
	if depth == 0 {
		h.mu.Lock()
		h.walks++
		h.mu.Unlock()
	}
	list, err := h.fs.ReadDir(path.Join(dir...))
	if err != nil {
		return
	}
	for _, fi := range list {
		p := append(append([]string(nil), dir...), fi.Name())
		h.ToHandle(h.fs, p)
		if fi.IsDir() {
			h.walk(p, depth+1)
		}
	}
}

func (h *handler) InvalidateHandle(_ billy.Filesystem, fh []byte) error {
	if len(fh) == handleLen {
		h.mu.Lock()
		delete(h.paths, [handleLen]byte(fh))
		h.mu.Unlock()
	}
	return nil
}

// HandleLimit bounds the entries of one READDIR reply (half of it).
func (h *handler) HandleLimit() int { return 4096 }

package serve

import (
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/partinfo"
)

// FilesystemsResponse is GET /api/v1/points/{vm}/{point}/filesystems:
// the guest filesystems of a point as the mount's fs/ names them.
type FilesystemsResponse struct {
	VM          string             `json:"vm"`
	Point       string             `json:"point"`
	Filesystems []guestfind.FSInfo `json:"filesystems"`
}

// FileEntry is one entry of GET /api/v1/points/{vm}/{point}/files.
type FileEntry struct {
	Name string `json:"name"`
	// Kind: file, dir, symlink, fifo, socket, char, block.
	Kind  string    `json:"kind"`
	Mode  string    `json:"mode"` // as ls -l shows it: drwxr-xr-x
	Perm  uint32    `json:"perm"` // permission and setuid/setgid/sticky bits, octal in Unix form
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
	UID   *uint32   `json:"uid,omitempty"` // absent where the filesystem records no owners (FAT, exFAT, NTFS)
	GID   *uint32   `json:"gid,omitempty"`
	// Target is a symlink's target, as stored.
	Target string `json:"target,omitempty"`
	// Error: the entry's attributes could not be read.
	Error string `json:"error,omitempty"`
}

// FilesResponse is GET /api/v1/points/{vm}/{point}/files?fs=NAME&path=P:
// the entry at P and, when it is a directory, one page of its entries in
// name order (limit, after and filter: browse_page.go).
type FilesResponse struct {
	VM         string      `json:"vm"`
	Point      string      `json:"point"`
	Filesystem string      `json:"filesystem"`
	FSType     string      `json:"fs_type"`
	Path       string      `json:"path"` // cleaned, from the filesystem's root: /etc
	Entry      FileEntry   `json:"entry"`
	Entries    []FileEntry `json:"entries,omitempty"`
	// The page of a directory: Total entries, Matched by the filter,
	// Offset of them before the page, at most Limit entries, and Next,
	// the cursor of the next page (after=Next), when one follows.
	Total   int    `json:"total,omitempty"`
	Matched int    `json:"matched,omitempty"`
	Offset  int    `json:"offset,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	Next    string `json:"next,omitempty"`
	Filter  string `json:"filter,omitempty"`
}

func fileEntry(name string, e guestfind.Entry, err error) FileEntry {
	fe := FileEntry{Name: name, Kind: e.Kind(), Mode: guestfind.LsMode(e.Mode), Perm: unixPerm(e.Mode), Size: e.Size, Mtime: e.Mtime, Target: e.Target}
	if e.HasOwner {
		uid, gid := e.UID, e.GID
		fe.UID, fe.GID = &uid, &gid
	}
	if err != nil {
		fe.Error = err.Error()
	}
	return fe
}

// unixPerm is m's permission bits with setuid, setgid and sticky in
// their Unix places (04000, 02000, 01000).
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func (s *Server) handleFilesystems(w http.ResponseWriter, r *http.Request) {
	p, err := s.repo.ResolvePoint(r.Context(), r.PathValue("vm"), r.PathValue("point"))
	if err != nil {
		browseError(w, err)
		return
	}
	b, release, err := s.browser(r.Context(), p)
	if err != nil {
		browseError(w, err)
		return
	}
	defer release()
	writeJSON(w, http.StatusOK, FilesystemsResponse{VM: p.VM, Point: p.ID, Filesystems: b.Filesystems()})
}

// guestTarget is a path of a guest filesystem of a point, resolved.
type guestTarget struct {
	vm, point string
	gen       uint32
	fs        guestfind.FS
	fsys      partinfo.Filesystem
	path      string // io/fs form: "." or etc/hosts
	entry     guestfind.Entry
	release   func()
}

// resolveGuest finds vm's point, its filesystem fsName and the entry at
// guestPath. Paths are cleaned (.. cannot climb above the filesystem's
// root) and only ever looked up inside the guest filesystem's reader:
// nothing of the host's filesystem is reachable.
func (s *Server) resolveGuest(r *http.Request, vm, point, fsName, guestPath string) (*guestTarget, error) {
	if fsName == "" {
		return nil, fmt.Errorf("no filesystem: add fs=NAME (sda/p1, lvm/VG/LV, ... as GET .../filesystems lists them): %w", guestfind.ErrNoFilesystem)
	}
	p, err := s.repo.ResolvePoint(r.Context(), vm, point)
	if err != nil {
		return nil, err
	}
	b, release, err := s.browser(r.Context(), p)
	if err != nil {
		return nil, err
	}
	fsys, f, err := b.Filesystem(fsName)
	if err != nil {
		release()
		return nil, err
	}
	e, clean, err := guestfind.Lookup(fsys, f.Type, guestPath)
	if err != nil {
		release()
		return nil, err
	}
	return &guestTarget{vm: p.VM, point: p.ID, gen: p.Gen, fs: f, fsys: fsys, path: clean, entry: e, release: release}, nil
}

func (g *guestTarget) slashPath() string {
	if g.path == "." {
		return "/"
	}
	return "/" + g.path
}

func (g *guestTarget) baseName() string {
	if g.path == "." {
		return strings.ReplaceAll(g.fs.Name, "/", "-")
	}
	return g.path[strings.LastIndex(g.path, "/")+1:]
}

func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	dq, err := dirQueryOf(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	g, err := s.resolveGuest(r, r.PathValue("vm"), r.PathValue("point"), q.Get("fs"), q.Get("path"))
	if err != nil {
		browseError(w, err)
		return
	}
	defer g.release()
	out := FilesResponse{VM: g.vm, Point: g.point, Filesystem: g.fs.Name, FSType: g.fs.Type, Path: g.slashPath(),
		Entry: fileEntry(g.baseName(), g.entry, nil)}
	if g.entry.Mode.IsDir() {
		pg, err := guestfind.ReadDirPage(r.Context(), g.fsys, g.fs.Type, g.entry.Ino, dq)
		if err != nil {
			browseError(w, fmt.Errorf("list %s of %s in %s/%s: %w", out.Path, g.fs.Name, g.vm, g.point, err))
			return
		}
		setPage(&out, pg, dq)
	}
	writeJSON(w, http.StatusOK, out)
}

package nfsserve

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5"

	"github.com/cairnbackup/cairn/backupd/nbdserve"
)

// disk is one flat file of the tree: the point's disk seen through its
// overlay.
type disk struct {
	name    string // NAME-flat.vmdk
	ov      *nbdserve.Overlay
	mtime   time.Time
	removed bool
}

// sessionFS is the exported tree: the scratch directory (a real
// directory: descriptors and whatever the hypervisor creates) with the
// disks' flat files shown at its top level.
type sessionFS struct {
	billy.Filesystem // the scratch directory
	mu               sync.Mutex
	disks            map[string]*disk
	minFree          int64 // free space scratch writes keep (guard.go)
	log              *slog.Logger
}

// virtual returns the disk a path names (nil: a scratch path).
func (s *sessionFS) virtual(p string) *disk {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.disks[p]
	if d == nil || d.removed {
		return nil
	}
	return d
}

// errDiskFile refuses what a flat file of a point cannot do.
func errDiskFile(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: syscall.EPERM}
}

func (s *sessionFS) Create(name string) (billy.File, error) {
	return s.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

func (s *sessionFS) Open(name string) (billy.File, error) {
	return s.OpenFile(name, os.O_RDONLY, 0)
}

func (s *sessionFS) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	if d := s.virtual(name); d != nil {
		if flag&os.O_TRUNC != 0 || flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL {
			return nil, errDiskFile("open", name)
		}
		return &diskFile{d: d, s: s}, nil
	}
	return s.guardScratch(s.Filesystem.OpenFile(name, flag, perm))
}

func (s *sessionFS) Stat(name string) (os.FileInfo, error) {
	if d := s.virtual(name); d != nil {
		return diskInfo{d: d, s: s}, nil
	}
	return s.Filesystem.Stat(name)
}

func (s *sessionFS) Lstat(name string) (os.FileInfo, error) {
	if d := s.virtual(name); d != nil {
		return diskInfo{d: d, s: s}, nil
	}
	return s.Filesystem.Lstat(name)
}

// Remove of a flat file hides it for the rest of the session (Storage
// vMotion deletes the source disk after copying it); its overlay stays
// until the session is deleted.
func (s *sessionFS) Remove(name string) error {
	if d := s.virtual(name); d != nil {
		s.mu.Lock()
		d.removed = true
		s.mu.Unlock()
		return nil
	}
	return s.Filesystem.Remove(name)
}

func (s *sessionFS) Rename(from, to string) error {
	if s.virtual(from) != nil || s.virtual(to) != nil {
		return errDiskFile("rename", from)
	}
	return s.Filesystem.Rename(from, to)
}

func (s *sessionFS) ReadDir(p string) ([]os.FileInfo, error) {
	list, err := s.Filesystem.ReadDir(p)
	if err != nil {
		return nil, err
	}
	if strings.TrimPrefix(path.Clean("/"+p), "/") != "" {
		return list, nil
	}
	out := list[:0]
	for _, fi := range list {
		if s.virtual(fi.Name()) == nil {
			out = append(out, fi)
		}
	}
	s.mu.Lock()
	for _, d := range s.disks {
		if !d.removed {
			out = append(out, diskInfo{d: d, s: s})
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// Chmod, Chtimes and the owner calls of billy.Change: a flat file keeps
// its mode and owner; its mtime follows the client (vSphere sets it).
func (s *sessionFS) Chmod(name string, mode os.FileMode) error {
	if s.virtual(name) != nil {
		return nil
	}
	if c, ok := s.Filesystem.(billy.Change); ok {
		return c.Chmod(name, mode)
	}
	return nil
}

func (s *sessionFS) Lchown(name string, uid, gid int) error {
	if s.virtual(name) != nil {
		return nil
	}
	if c, ok := s.Filesystem.(billy.Change); ok {
		return c.Lchown(name, uid, gid)
	}
	return nil
}

func (s *sessionFS) Chown(name string, uid, gid int) error {
	if s.virtual(name) != nil {
		return nil
	}
	if c, ok := s.Filesystem.(billy.Change); ok {
		return c.Chown(name, uid, gid)
	}
	return nil
}

func (s *sessionFS) Chtimes(name string, atime, mtime time.Time) error {
	if d := s.virtual(name); d != nil {
		s.mu.Lock()
		d.mtime = mtime
		s.mu.Unlock()
		return nil
	}
	if c, ok := s.Filesystem.(billy.Change); ok {
		return c.Chtimes(name, atime, mtime)
	}
	return nil
}

// diskInfo is a flat file's attributes.
type diskInfo struct {
	d *disk
	s *sessionFS
}

func (i diskInfo) Name() string       { return i.d.name }
func (i diskInfo) Size() int64        { return i.d.ov.Size() }
func (i diskInfo) Mode() os.FileMode  { return 0o600 }
func (i diskInfo) IsDir() bool        { return false }
func (i diskInfo) Sys() any           { return nil }
func (i diskInfo) ModTime() time.Time { i.s.mu.Lock(); defer i.s.mu.Unlock(); return i.d.mtime }

// diskFile is an open flat file.
type diskFile struct {
	d   *disk
	s   *sessionFS
	pos int64
}

func (f *diskFile) Name() string { return f.d.name }

func (f *diskFile) ReadAt(p []byte, off int64) (int, error) { return f.d.ov.ReadAt(p, off) }

func (f *diskFile) Read(p []byte) (int, error) {
	n, err := f.d.ov.ReadAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *diskFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.d.ov.WriteAt(p, off)
	if errors.Is(err, nbdserve.ErrPastEnd) {
		err = &fs.PathError{Op: "write", Path: f.d.name, Err: syscall.EFBIG}
	}
	if n > 0 {
		f.s.mu.Lock()
		f.d.mtime = time.Now()
		f.s.mu.Unlock()
	}
	return n, err
}

func (f *diskFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *diskFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		off += f.d.ov.Size()
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.d.name, Err: syscall.EINVAL}
	}
	f.pos = off
	return off, nil
}

func (f *diskFile) Close() error  { return nil }
func (f *diskFile) Lock() error   { return nil }
func (f *diskFile) Unlock() error { return nil }

// Truncate to the disk's own size is accepted (clients set the size they
// see); a flat file of a point does not grow or shrink.
func (f *diskFile) Truncate(size int64) error {
	if size == f.d.ov.Size() {
		return nil
	}
	return errDiskFile("truncate", f.d.name)
}

package partinfo

import (
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// maxSymlinkHops bounds symlink resolution like the kernel's ELOOP limit.
const maxSymlinkHops = 40

// AsFS presents a Filesystem as an io/fs file system. It implements
// fs.FS, fs.ReadDirFS, fs.StatFS and fs.ReadLinkFS. Symbolic links are
// followed inside the filesystem (absolute targets from its root); Lstat
// and ReadLink do not follow the last component.
func AsFS(f Filesystem) fs.FS { return &ioFS{f: f} }

type ioFS struct{ f Filesystem }

var (
	_ fs.ReadDirFS  = (*ioFS)(nil)
	_ fs.StatFS     = (*ioFS)(nil)
	_ fs.ReadLinkFS = (*ioFS)(nil)
)

// resolve walks name to an inode, following symlinks in the middle of the
// path and, when follow is true, at its end.
func (x *ioFS) resolve(op, name string, follow bool) (uint64, Attr, error) {
	fail := func(err error) (uint64, Attr, error) {
		return 0, Attr{}, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if !ValidPath(name) {
		return fail(fs.ErrInvalid)
	}
	root := x.f.Root()
	stack := []uint64{root}
	var todo []string
	if name != "." {
		todo = strings.Split(name, "/")
	}
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		dir := stack[len(stack)-1]
		ino, err := x.f.Lookup(dir, c)
		if err != nil {
			return fail(err)
		}
		a, err := x.f.Stat(ino)
		if err != nil {
			return fail(err)
		}
		if a.Mode&fs.ModeSymlink != 0 && (len(todo) > 0 || follow) {
			hops++
			if hops > maxSymlinkHops {
				return fail(errors.New("too many levels of symbolic links"))
			}
			target, err := x.f.Readlink(ino)
			if err != nil {
				return fail(err)
			}
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		if len(todo) > 0 && !a.Mode.IsDir() {
			return fail(ErrNotDir)
		}
		stack = append(stack, ino)
	}
	ino := stack[len(stack)-1]
	a, err := x.f.Stat(ino)
	if err != nil {
		return fail(err)
	}
	return ino, a, nil
}

// Open opens the named file or directory, following symlinks.
func (x *ioFS) Open(name string) (fs.File, error) {
	ino, a, err := x.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	return &ioFile{x: x, ino: ino, info: fileInfo{name: path.Base(name), a: a}}, nil
}

// Stat describes the named file, following symlinks.
func (x *ioFS) Stat(name string) (fs.FileInfo, error) {
	_, a, err := x.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return fileInfo{name: path.Base(name), a: a}, nil
}

// Lstat describes the named file without following a final symlink.
func (x *ioFS) Lstat(name string) (fs.FileInfo, error) {
	_, a, err := x.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return fileInfo{name: path.Base(name), a: a}, nil
}

// ReadLink returns the target of the named symbolic link.
func (x *ioFS) ReadLink(name string) (string, error) {
	ino, a, err := x.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if a.Mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: ErrNotSymlink}
	}
	t, err := x.f.Readlink(ino)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return t, nil
}

// ReadDir lists the named directory sorted by name.
func (x *ioFS) ReadDir(name string) ([]fs.DirEntry, error) {
	ino, a, err := x.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !a.Mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: ErrNotDir}
	}
	return x.dirEntries(name, ino)
}

func (x *ioFS) dirEntries(name string, ino uint64) ([]fs.DirEntry, error) {
	ents, err := x.f.ReadDir(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(ents))
	for _, e := range ents {
		out = append(out, dirEntry{x: x, e: e})
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// fileInfo is the fs.FileInfo of an inode; Sys returns its Attr.
type fileInfo struct {
	name string
	a    Attr
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.a.Size }
func (i fileInfo) Mode() fs.FileMode  { return i.a.Mode }
func (i fileInfo) ModTime() time.Time { return i.a.Mtime }
func (i fileInfo) IsDir() bool        { return i.a.Mode.IsDir() }
func (i fileInfo) Sys() any           { return i.a }

type dirEntry struct {
	x *ioFS
	e DirEntry
}

func (d dirEntry) Name() string      { return d.e.Name }
func (d dirEntry) IsDir() bool       { return d.e.Type.IsDir() }
func (d dirEntry) Type() fs.FileMode { return d.e.Type.Type() }
func (d dirEntry) Info() (fs.FileInfo, error) {
	a, err := d.x.f.Stat(d.e.Ino)
	if err != nil {
		return nil, err
	}
	return fileInfo{name: d.e.Name, a: a}, nil
}
func (d dirEntry) String() string { return fs.FormatDirEntry(d) }

// ioFile is an open file or directory. It is not safe for concurrent
// use (like *os.File's offset), but many ioFiles may share a Filesystem.
type ioFile struct {
	x       *ioFS
	ino     uint64
	info    fileInfo
	off     int64
	dir     []fs.DirEntry
	dirRead bool
	closed  bool
}

var (
	_ fs.ReadDirFile = (*ioFile)(nil)
	_ io.ReaderAt    = (*ioFile)(nil)
	_ io.Seeker      = (*ioFile)(nil)
)

func (f *ioFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *ioFile) Close() error {
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

func (f *ioFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// ReadAt reads the file's bytes at off.
func (f *ioFile) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, fs.ErrClosed
	}
	if f.info.IsDir() {
		return 0, &fs.PathError{Op: "read", Path: f.info.name, Err: errors.New("is a directory")}
	}
	if off >= f.info.Size() {
		return 0, io.EOF
	}
	total := 0
	for total < len(p) {
		n, err := f.x.f.ReadAt(f.ino, p[total:], off+int64(total))
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, io.ErrNoProgress
		}
	}
	return total, nil
}

func (f *ioFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.info.Size()
	default:
		return 0, fs.ErrInvalid
	}
	if offset < 0 {
		return 0, fs.ErrInvalid
	}
	f.off = offset
	return offset, nil
}

func (f *ioFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if f.closed {
		return nil, fs.ErrClosed
	}
	if !f.info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: f.info.name, Err: ErrNotDir}
	}
	if !f.dirRead {
		d, err := f.x.dirEntries(f.info.name, f.ino)
		if err != nil {
			return nil, err
		}
		f.dir, f.dirRead = d, true
	}
	if n <= 0 {
		out := f.dir
		f.dir = nil
		return out, nil
	}
	if len(f.dir) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(f.dir))
	out := f.dir[:n]
	f.dir = f.dir[n:]
	return out, nil
}

// ValidPath is io/fs.ValidPath without its UTF-8 check: guest names are
// bytes (a Latin-1 name of an old Linux system, the WTF-8 form
// DecodeUTF16Name gives an unpaired surrogate), and each must stay
// reachable. Elements may not be empty, "." or ".."; "." alone is the
// root.
func ValidPath(name string) bool {
	if name == "." {
		return true
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return false
		}
	}
	return true
}

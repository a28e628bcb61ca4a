package partinfo

import "fmt"

// Safe and SafeOpen are the reader boundary: every call from the mount
// (fusefs/guest) or the CLI into a filesystem reader goes through them
// (partinfo/fsopen opens with SafeOpen), and they are the one place a
// reader's panic is recovered. The readers do not recover themselves
// (the NTFS reader's guard around each go-ntfs call aside).

// Safe wraps a Filesystem so that a panic inside any method becomes an
// error wrapping ErrCorrupt that names the filesystem and the operation.
// Info and Root cannot fail: a panic there yields the zero value.
func Safe(fs Filesystem, name string) Filesystem {
	if s, ok := fs.(*safeFS); ok && s.name == name {
		return s
	}
	return &safeFS{fs: fs, name: name}
}

// SafeOpen runs open, a reader's Open of a filesystem called name, turning
// a panic into an error wrapping ErrCorrupt, and wraps what it opened in
// Safe.
func SafeOpen(name string, open func() (Filesystem, error)) (fsys Filesystem, err error) {
	defer catch(name, "open", &err)
	if fsys, err = open(); err != nil {
		return nil, err
	}
	return Safe(fsys, name), nil
}

type safeFS struct {
	fs   Filesystem
	name string
}

// catch converts a recovered panic into an ErrCorrupt error in *err.
func catch(name, op string, err *error) {
	if p := recover(); p != nil {
		*err = panicked(name, op, p)
	}
}

// panicked is the error of a reader's panic p during op.
func panicked(name, op string, p any) error {
	return fmt.Errorf("%s: %s: parser panic (%v): %w", name, op, p, ErrCorrupt)
}

// The wrappers below recover in a deferred closure of their own and
// format the operation's description only after a panic: these calls
// run once per FUSE request or listed entry, and formatting every time
// cost about a tenth of a cached Stat.

func (s *safeFS) Info() (i Info) {
	defer func() {
		if recover() != nil {
			i = Info{Used: -1, Free: -1}
		}
	}()
	return s.fs.Info()
}

func (s *safeFS) Root() (ino uint64) {
	defer func() {
		if recover() != nil {
			ino = 0
		}
	}()
	return s.fs.Root()
}

func (s *safeFS) Stat(ino uint64) (a Attr, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("stat inode %d", ino), p)
		}
	}()
	return s.fs.Stat(ino)
}

func (s *safeFS) ReadDir(ino uint64) (d []DirEntry, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("read directory %d", ino), p)
		}
	}()
	return s.fs.ReadDir(ino)
}

func (s *safeFS) Lookup(dir uint64, name string) (ino uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("look up %q in directory %d", name, dir), p)
		}
	}()
	return s.fs.Lookup(dir, name)
}

func (s *safeFS) Readlink(ino uint64) (t string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("read link %d", ino), p)
		}
	}()
	return s.fs.Readlink(ino)
}

func (s *safeFS) ReadAt(ino uint64, p []byte, off int64) (n int, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("read inode %d at %d", ino, off), p)
		}
	}()
	return s.fs.ReadAt(ino, p, off)
}

func (s *safeFS) SeekData(ino uint64, off int64) (o int64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("seek data in inode %d", ino), p)
		}
	}()
	return s.fs.SeekData(ino, off)
}

func (s *safeFS) SeekHole(ino uint64, off int64) (o int64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("seek hole in inode %d", ino), p)
		}
	}()
	return s.fs.SeekHole(ino, off)
}

// Xattrs lists an inode's extended attributes when the wrapped reader has
// them (partinfo.XattrReader); otherwise an error wrapping ErrNoXattrs.
func (s *safeFS) Xattrs(ino uint64) (x []Xattr, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(s.name, fmt.Sprintf("list extended attributes of inode %d", ino), p)
		}
	}()
	r, ok := s.fs.(XattrReader)
	if !ok {
		return nil, fmt.Errorf("%s: %w", s.name, ErrNoXattrs)
	}
	return r.Xattrs(ino)
}

package xfs

import (
	"fmt"
	"io/fs"
	"slices"

	"github.com/cairnbackup/cairn/partinfo"
)

// ReadDir lists directory ino without "." and "..".
func (x *xfs) ReadDir(ino uint64) (entries []partinfo.DirEntry, err error) {
	d, err := x.readDirectory(ino)
	if err != nil {
		return nil, err
	}
	return slices.Clone(d.entries), nil
}

// Lookup finds name in directory dir.
func (x *xfs) Lookup(dir uint64, name string) (ino uint64, err error) {
	if name == "" || len(name) > 255 {
		return 0, fmt.Errorf("xfs: lookup %q in directory %d: %w", name, dir, fs.ErrNotExist)
	}
	d, ok := x.dirs.Get(dir)
	if !ok {
		in, err := x.readInode(dir)
		if err != nil {
			return 0, err
		}
		if !in.isDir() {
			return 0, fmt.Errorf("xfs: inode %d: %w", dir, partinfo.ErrNotDir)
		}
		if in.size >= x.hashLookupFrom && x.hashedLookupOK(in) {
			return x.lookupHashed(in, name)
		}
		if d, err = x.readDirectory(dir); err != nil {
			return 0, err
		}
	}
	ino, found := d.byName[name]
	if !found {
		return 0, fmt.Errorf("xfs: lookup %q in directory %d: %w", name, dir, fs.ErrNotExist)
	}
	return ino, nil
}

// Readlink returns the target of symlink ino exactly as stored.
func (x *xfs) Readlink(ino uint64) (target string, err error) {
	in, err := x.readInode(ino)
	if err != nil {
		return "", err
	}
	return x.readlink(in)
}

// ReadAt reads regular file ino at offset off; holes read as zeros.
func (x *xfs) ReadAt(ino uint64, p []byte, off int64) (n int, err error) {
	in, err := x.regular(ino)
	if err != nil {
		return 0, err
	}
	return x.readFile(in, p, off)
}

// SeekData returns the first offset >= off that holds data.
func (x *xfs) SeekData(ino uint64, off int64) (pos int64, err error) {
	in, err := x.regular(ino)
	if err != nil {
		return 0, err
	}
	return x.seekData(in, off)
}

// SeekHole returns the first offset >= off inside a hole, or the size.
func (x *xfs) SeekHole(ino uint64, off int64) (pos int64, err error) {
	in, err := x.regular(ino)
	if err != nil {
		return 0, err
	}
	return x.seekHole(in, off)
}

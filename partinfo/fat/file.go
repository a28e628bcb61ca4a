package fat

import (
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
)

// Stat returns the attributes of inode ino. FAT has no owners or
// permissions: directories are 0555, files 0444.
func (f *FS) Stat(ino uint64) (partinfo.Attr, error) {
	if ino == rootIno {
		// No times are stored for the root: the Unix epoch, as the
		// kernel's vfat shows it (fat_read_root; Go's zero time is year 1).
		epoch := time.Unix(0, 0).UTC()
		a := partinfo.Attr{Ino: rootIno, Mode: fs.ModeDir | 0o555, Nlink: 2, Mtime: epoch, Atime: epoch, Ctime: epoch}
		if b, _, err := f.dirStream(rootIno); err == nil {
			a.Size = int64(len(b))
			a.Blocks = a.Size / 512
		} else {
			return partinfo.Attr{}, err
		}
		return a, nil
	}
	e, err := f.entryAt(ino)
	if err != nil {
		return partinfo.Attr{}, err
	}
	a := partinfo.Attr{Ino: ino, Mode: 0o444, Nlink: 1, Size: int64(e.size),
		Mtime: e.mtime, Ctime: e.mtime, Atime: e.atime}
	if a.Atime.IsZero() {
		a.Atime = e.mtime
	}
	if e.isDir() {
		a.Mode = fs.ModeDir | 0o555
		a.Nlink = 2
		a.Size = 0
		if e.cluster >= 2 {
			if ex, err := f.chain(e.cluster); err == nil {
				a.Size = f.chainBytes(ex)
			}
		}
	}
	cs := f.g.ClusterSize
	a.Blocks = (a.Size + cs - 1) / cs * cs / 512
	return a, nil
}

// Readlink fails: FAT has no symbolic links.
func (f *FS) Readlink(ino uint64) (string, error) {
	return "", fmt.Errorf("inode %d: %w", ino, partinfo.ErrNotSymlink)
}

// file returns the entry of a regular file and its cluster chain.
func (f *FS) file(ino uint64) (rawEntry, []extent, error) {
	if ino == rootIno {
		return rawEntry{}, nil, fmt.Errorf("inode %d: %w", ino, partinfo.ErrNotRegular)
	}
	e, err := f.entryAt(ino)
	if err != nil {
		return e, nil, err
	}
	if e.isDir() {
		return e, nil, fmt.Errorf("inode %d: %w", ino, partinfo.ErrNotRegular)
	}
	if e.size == 0 {
		return e, nil, nil
	}
	if e.cluster == 0 {
		return e, nil, fmt.Errorf("file %d has %d bytes but no clusters: %w", ino, e.size, partinfo.ErrCorrupt)
	}
	ex, err := f.chain(e.cluster)
	if err != nil {
		return e, nil, fmt.Errorf("file %d: %w", ino, err)
	}
	if f.chainBytes(ex) < int64(e.size) {
		return e, nil, fmt.Errorf("file %d: cluster chain holds %d bytes, size is %d: %w",
			ino, f.chainBytes(ex), e.size, partinfo.ErrCorrupt)
	}
	return e, ex, nil
}

// ReadAt reads a file's bytes; io.EOF at the end.
func (f *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	e, ex, err := f.file(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d: %w", off, fs.ErrInvalid)
	}
	size := int64(e.size)
	if off >= size {
		return 0, io.EOF
	}
	want := p
	if int64(len(want)) > size-off {
		want = want[:size-off]
	}
	n, err := f.readChain(ex, want, off)
	if err != nil {
		return n, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// SeekData returns off when it lies inside the file: FAT has no holes.
func (f *FS) SeekData(ino uint64, off int64) (int64, error) {
	e, _, err := f.file(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 || off >= int64(e.size) {
		return 0, partinfo.ErrNoData
	}
	return off, nil
}

// SeekHole returns the file size (FAT has no holes); like lseek, an
// offset at or past the end gives ErrNoData.
func (f *FS) SeekHole(ino uint64, off int64) (int64, error) {
	e, _, err := f.file(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 || off >= int64(e.size) {
		return 0, partinfo.ErrNoData
	}
	return int64(e.size), nil
}

var _ partinfo.Filesystem = (*FS)(nil)

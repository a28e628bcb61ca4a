package guestfind

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/partinfo"
)

// ErrNoFilesystem means a point has no guest filesystem of the name
// asked for (Browser.Filesystem).
var ErrNoFilesystem = errors.New("no such guest filesystem in the point")

// Browser is one point open for browsing its guest filesystems (the
// web console's file browser, the API's file endpoints): every
// filesystem of the point is found and opened once, as the mount's fs/
// shows them, and read through the same readers as `cairn files`. It is
// safe for concurrent use once open; Close releases its disks.
type Browser struct {
	Point blockmap.Point
	o     *pointFS
}

// FSInfo is one filesystem of a Browser: its name, how it is selected,
// its type, and why it cannot be read when it cannot (Error).
type FSInfo struct {
	FS
	Error string `json:"error,omitempty"`
	// NoFS: nothing cairn reads was found there (swap, a PV, an array
	// member, an unknown type); Error says what was detected.
	NoFS bool `json:"no_filesystem,omitempty"`
}

// Browse opens every disk of p from src and every guest filesystem on
// them. A filesystem that cannot be opened is listed with its error; a
// disk that cannot be opened fails the whole point.
func Browse(ctx context.Context, src Source, p blockmap.Point) (*Browser, error) {
	// No recording reader: a browser reads whole files, and its reads
	// are never compared with another point's.
	o, err := openDirect(ctx, src, p, Selector{})
	if err != nil {
		return nil, err
	}
	return &Browser{Point: p, o: o}, nil
}

// Close releases the point's disks.
func (b *Browser) Close() { b.o.close() }

// Filesystems lists the point's filesystems in the mount's order.
func (b *Browser) Filesystems() []FSInfo {
	out := make([]FSInfo, 0, len(b.o.fss))
	for _, f := range b.o.fss {
		fi := FSInfo{FS: f.FS, NoFS: f.noFS}
		if f.err != nil {
			fi.Error = f.err.Error()
		}
		out = append(out, fi)
	}
	return out
}

// Filesystem returns the reader of the filesystem called name (sda/p1,
// lvm/vg/root, ...): ErrNoFilesystem when the point has none of that
// name, its open error when it cannot be read.
func (b *Browser) Filesystem(name string) (partinfo.Filesystem, FS, error) {
	name = strings.Trim(name, "/")
	for _, f := range b.o.fss {
		if f.Name != name {
			continue
		}
		if f.err != nil {
			return nil, f.FS, fmt.Errorf("filesystem %s of %s/%s: %w", name, b.Point.VM, b.Point.ID, f.err)
		}
		return f.fsys, f.FS, nil
	}
	return nil, FS{}, fmt.Errorf("%q in %s/%s: %w", name, b.Point.VM, b.Point.ID, ErrNoFilesystem)
}

// Lookup returns the entry at guest path p (any form CleanPath takes) of
// a filesystem of type typ, without following a symlink at its end, and
// the cleaned path. A missing entry is an error matching fs.ErrNotExist.
func Lookup(fsys partinfo.Filesystem, typ, p string) (Entry, string, error) {
	clean, err := CleanPath(p)
	if err != nil {
		return Entry{}, "", err
	}
	e, ok, err := lookup(fsys, typ, clean)
	if err != nil {
		return Entry{}, clean, err
	}
	if !ok {
		return Entry{}, clean, fmt.Errorf("%s: %w", "/"+strings.TrimPrefix(clean, "."), fs.ErrNotExist)
	}
	return e, clean, nil
}

// DirEntry is one entry of a listed directory.
type DirEntry struct {
	Name string
	Entry
	// Err: the entry's attributes could not be read (it is listed by
	// name only).
	Err error
}

// ReadDir lists the directory whose inode is ino in name order, with
// every entry's attributes (symlinks not followed, their targets read).
func ReadDir(ctx context.Context, fsys partinfo.Filesystem, typ string, ino uint64) ([]DirEntry, error) {
	ents, err := fsys.ReadDir(ino)
	if err != nil {
		return nil, err
	}
	owners := hasOwners(typ)
	out := make([]DirEntry, 0, len(ents))
	for i := range ents {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out = append(out, statEntry(fsys, &ents[i], owners)) // dirpage.go
	}
	sortDir(out)
	return out, nil
}

func sortDir(d []DirEntry) {
	slices.SortFunc(d, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
}

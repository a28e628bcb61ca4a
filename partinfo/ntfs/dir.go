package ntfs

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/cairnbackup/cairn/partinfo"
)

// dirListing is a parsed directory with name indexes for Lookup.
type dirListing struct {
	entries []partinfo.DirEntry
	byName  map[string]uint64
	byFold  map[string]uint64
}

// Stat returns the attributes of MFT record ino.
func (f *FS) Stat(ino uint64) (partinfo.Attr, error) {
	r, err := f.record(ino)
	if err != nil {
		return partinfo.Attr{}, err
	}
	return r.attr(), nil
}

// ReadDir lists directory ino: one entry per name, hard links included.
func (f *FS) ReadDir(ino uint64) ([]partinfo.DirEntry, error) {
	d, err := f.listing(ino)
	if err != nil {
		return nil, err
	}
	return append([]partinfo.DirEntry(nil), d.entries...), nil
}

// Lookup finds name in directory dir: exactly first, then ignoring case
// (the Win32 namespace is case-insensitive).
func (f *FS) Lookup(dir uint64, name string) (uint64, error) {
	d, err := f.listing(dir)
	if err != nil {
		return 0, err
	}
	if ino, ok := d.byName[name]; ok {
		return ino, nil
	}
	if ino, ok := d.byFold[strings.ToLower(name)]; ok {
		return ino, nil
	}
	return 0, fmt.Errorf("%q in directory %d: %w", name, dir, fs.ErrNotExist)
}

// listing returns the cached listing of directory ino, parsing it once.
func (f *FS) listing(ino uint64) (*dirListing, error) {
	var d *dirListing
	err := f.guard(fmt.Sprintf("read directory %d", ino), func() error {
		if c, ok := f.dirs[ino]; ok {
			d = &dirListing{entries: c}
		} else {
			entries, err := f.readDirLocked(ino)
			if err != nil {
				return err
			}
			if len(f.dirs) >= cacheLimit {
				clear(f.dirs)
			}
			f.dirs[ino] = entries
			d = &dirListing{entries: entries}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.byName = make(map[string]uint64, len(d.entries))
	d.byFold = make(map[string]uint64, len(d.entries))
	for _, e := range d.entries {
		d.byName[e.Name] = e.Ino
		if _, ok := d.byFold[strings.ToLower(e.Name)]; !ok {
			d.byFold[strings.ToLower(e.Name)] = e.Ino
		}
	}
	return d, nil
}

// readDirLocked walks the $I30 index of ino. Each index entry is kept
// only if the record it points to is in use and carries a $FILE_NAME
// with this parent and name, so stale entries never show.
func (f *FS) readDirLocked(ino uint64) ([]partinfo.DirEntry, error) {
	dir, err := f.recordLocked(ino)
	if err != nil {
		return nil, err
	}
	if !dir.isDir || dir.isLink() {
		return nil, fmt.Errorf("MFT record %d: %w", ino, partinfo.ErrNotDir)
	}
	m, err := f.ctx.GetMFT(int64(ino))
	if err != nil {
		return nil, fmt.Errorf("MFT record %d: %v: %w", ino, err, partinfo.ErrCorrupt)
	}
	seen := map[string]bool{}
	var out []partinfo.DirEntry
	for _, ie := range f.indexEntries(m) {
		if ie.Flags()&2 != 0 {
			continue // end-of-node marker carries no name
		}
		fn := ie.File()
		if fn.NameType().Value == 2 {
			continue // DOS 8.3 alias of a long name
		}
		name := fileNameOf(fn)
		child := ie.MftReference()
		if name == "" || name == "." || seen[name] || child == ino || strings.ContainsAny(name, "/\x00") {
			continue
		}
		if ino == rootIno && child < firstUserRecord {
			continue // $MFT, $Bitmap, $Extend, ... are NTFS metadata
		}
		rec, err := f.recordLocked(child)
		if err != nil || !rec.hasName(ino, name) {
			continue
		}
		seen[name] = true
		t := fs.FileMode(0)
		switch {
		case rec.isLink():
			t = fs.ModeSymlink
		case rec.isDir:
			t = fs.ModeDir
		}
		out = append(out, partinfo.DirEntry{Name: name, Ino: child, Type: t})
	}
	return out, nil
}

// hasName reports whether the record is linked as name from parent.
func (r *record) hasName(parent uint64, name string) bool {
	for _, n := range r.names {
		if n.parent == parent && n.name == name {
			return true
		}
	}
	return false
}

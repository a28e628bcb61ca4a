package fat

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/cairnbackup/cairn/partinfo"
)

// maxDirBytes bounds a directory (the format allows 65,536 entries).
const maxDirBytes = 65536 * 32

// dirStream returns the bytes of directory ino and the volume offset of
// each 32-byte slot.
func (f *FS) dirStream(ino uint64) ([]byte, func(i int) uint64, error) {
	if ino == rootIno && f.g.Type != "fat32" {
		n := f.g.RootEntries * 32
		b := make([]byte, n)
		if err := readFull(f.r, b, f.off+f.g.RootDirOffset); err != nil {
			return nil, nil, fmt.Errorf("read root directory: %w", err)
		}
		return b, func(i int) uint64 { return uint64(f.g.RootDirOffset) + uint64(i) }, nil
	}
	var first uint32
	if ino == rootIno {
		first = f.g.RootCluster
	} else {
		e, err := f.entryAt(ino)
		if err != nil {
			return nil, nil, err
		}
		if !e.isDir() {
			return nil, nil, fmt.Errorf("inode %d: %w", ino, partinfo.ErrNotDir)
		}
		if e.cluster == 0 {
			// Only ".." may point at the root this way, and ".." is
			// never listed: a directory without clusters is corrupt.
			return nil, nil, fmt.Errorf("directory %d has no clusters: %w", ino, partinfo.ErrCorrupt)
		}
		first = e.cluster
	}
	ex, err := f.chain(first)
	if err != nil {
		return nil, nil, fmt.Errorf("directory %d: %w", ino, err)
	}
	n := min(f.chainBytes(ex), maxDirBytes)
	b := make([]byte, n)
	if _, err := f.readChain(ex, b, 0); err != nil {
		return nil, nil, fmt.Errorf("read directory %d: %w", ino, err)
	}
	offset := func(i int) uint64 {
		pos := int64(i)
		for _, e := range ex {
			l := int64(e.count) * f.g.ClusterSize
			if pos < l {
				return uint64(f.g.DataOffset + int64(e.first-2)*f.g.ClusterSize + pos)
			}
			pos -= l
		}
		return 0
	}
	return b, offset, nil
}

// entries parses directory ino (cached).
func (f *FS) entries(ino uint64) ([]entry, error) {
	f.mu.Lock()
	d, ok := f.dirs[ino]
	f.mu.Unlock()
	if ok {
		return d, nil
	}
	b, offset, err := f.dirStream(ino)
	if err != nil {
		return nil, err
	}
	var out []entry
	var lfn lfnState
	for i := 0; i+32 <= len(b); i += 32 {
		s := b[i : i+32]
		if s[0] == 0x00 {
			break
		}
		if s[0] == 0xE5 {
			lfn.valid = false
			continue
		}
		if s[11]&0x3F == attrLFN {
			lfn.add(s)
			continue
		}
		e := decodeEntry(s, offset(i), f.g.Type == "fat32")
		long, okLong := lfn.name(e.short)
		lfn.valid = false
		if e.attr&attrVolumeID != 0 {
			continue
		}
		name := shortName(e.short, e.ntCase)
		if okLong {
			name = long
		}
		if name == "." || name == ".." || name == "" || strings.ContainsAny(name, "/\x00") {
			continue
		}
		out = append(out, entry{name: name, raw: e})
	}
	f.mu.Lock()
	if len(f.dirs) >= dirCacheLimit {
		clear(f.dirs)
	}
	f.dirs[ino] = out
	f.mu.Unlock()
	return out, nil
}

// volumeLabel returns the label stored in the root directory.
func (f *FS) volumeLabel() (string, bool) {
	b, _, err := f.dirStream(rootIno)
	if err != nil {
		return "", false
	}
	for i := 0; i+32 <= len(b); i += 32 {
		s := b[i : i+32]
		if s[0] == 0 {
			break
		}
		if s[0] != 0xE5 && s[11]&0x3F != attrLFN && s[11]&attrVolumeID != 0 {
			var n [11]byte
			copy(n[:], s[:11])
			return strings.TrimRight(latin1(n[:]), " "), true
		}
	}
	return "", false
}

// entryAt reads the short directory entry at volume offset ino.
func (f *FS) entryAt(ino uint64) (rawEntry, error) {
	if ino%32 != 0 || int64(ino) < f.g.RootDirOffset || int64(ino)+32 > f.g.TotalSectors*f.g.BytesPerSector {
		return rawEntry{}, fmt.Errorf("inode %d: %w", ino, fs.ErrNotExist)
	}
	b := make([]byte, 32)
	if err := readFull(f.r, b, f.off+int64(ino)); err != nil {
		return rawEntry{}, fmt.Errorf("read directory entry %d: %w", ino, err)
	}
	if b[0] == 0 || b[0] == 0xE5 || b[11]&0x3F == attrLFN || b[11]&attrVolumeID != 0 {
		return rawEntry{}, fmt.Errorf("inode %d is not a file entry: %w", ino, fs.ErrNotExist)
	}
	return decodeEntry(b, ino, f.g.Type == "fat32"), nil
}

// ReadDir lists directory ino.
func (f *FS) ReadDir(ino uint64) ([]partinfo.DirEntry, error) {
	es, err := f.entries(ino)
	if err != nil {
		return nil, err
	}
	out := make([]partinfo.DirEntry, 0, len(es))
	for _, e := range es {
		t := fs.FileMode(0)
		if e.raw.isDir() {
			t = fs.ModeDir
		}
		out = append(out, partinfo.DirEntry{Name: e.name, Ino: e.raw.ino, Type: t})
	}
	return out, nil
}

// Lookup finds name in directory dir: exactly first, then ignoring case
// as FAT does.
func (f *FS) Lookup(dir uint64, name string) (uint64, error) {
	es, err := f.entries(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range es {
		if e.name == name {
			return e.raw.ino, nil
		}
	}
	for _, e := range es {
		if strings.EqualFold(e.name, name) {
			return e.raw.ino, nil
		}
	}
	return 0, fmt.Errorf("%q in directory %d: %w", name, dir, fs.ErrNotExist)
}

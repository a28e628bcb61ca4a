package xfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	dirBlockMagicV5 = 0x58444233 // "XDB3": single-block directory
	dirDataMagicV5  = 0x58444433 // "XDD3": data block of a leaf/node directory
	dirBlockMagicV4 = 0x58443242 // "XD2B"
	dirDataMagicV4  = 0x58443244 // "XD2D"

	dirDataHdrV5 = 64
	dirDataHdrV4 = 16

	// dirLeafOffset is the byte offset where a directory's leaf (hash
	// index) blocks start; every data block lies below it.
	dirLeafOffset = 32 << 30
)

// directory is a parsed directory: its entries in on-disk order and a
// name index for Lookup.
type directory struct {
	entries []partinfo.DirEntry
	byName  map[string]uint64
}

// readDirectory parses directory ino (any format), cached per inode.
func (x *xfs) readDirectory(ino uint64) (*directory, error) {
	if d, ok := x.dirs.Get(ino); ok {
		return d, nil
	}
	in, err := x.readInode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, partinfo.ErrNotDir)
	}
	var entries []partinfo.DirEntry
	switch in.format {
	case fmtLocal:
		entries, err = x.parseShortform(in)
	case fmtExtents, fmtBtree:
		entries, err = x.parseDirBlocks(in)
	default:
		err = corruptf("directory inode %d: data fork format %d", ino, in.format)
	}
	if err != nil {
		return nil, err
	}
	if err := x.fillTypes(entries); err != nil {
		return nil, err
	}
	d := &directory{entries: entries, byName: make(map[string]uint64, len(entries))}
	for _, e := range entries {
		if _, dup := d.byName[e.Name]; !dup {
			d.byName[e.Name] = e.Ino
		}
	}
	x.dirs.Add(ino, d, len(entries)+1)
	return d, nil
}

// fillTypes stats the inodes of entries whose type the directory does not
// record (filesystems without the ftype feature).
func (x *xfs) fillTypes(entries []partinfo.DirEntry) error {
	for i := range entries {
		if entries[i].Type != typeUnknown {
			continue
		}
		in, err := x.readInode(entries[i].Ino)
		if err != nil {
			return fmt.Errorf("entry %q: %w", entries[i].Name, err)
		}
		entries[i].Type = typeMode(in.mode)
	}
	return nil
}

// typeUnknown marks an entry whose type must be read from its inode.
const typeUnknown = fs.ModeIrregular

// ftypeMode maps a directory entry file type to Go type bits.
func ftypeMode(t uint8) fs.FileMode {
	switch t {
	case 1:
		return 0
	case 2:
		return fs.ModeDir
	case 3:
		return fs.ModeDevice | fs.ModeCharDevice
	case 4:
		return fs.ModeDevice
	case 5:
		return fs.ModeNamedPipe
	case 6:
		return fs.ModeSocket
	case 7:
		return fs.ModeSymlink
	}
	return typeUnknown
}

// parseShortform decodes a directory stored inside its inode.
func (x *xfs) parseShortform(in *inode) ([]partinfo.DirEntry, error) {
	f := in.fork
	if in.size >= 0 && in.size < int64(len(f)) {
		f = f[:in.size]
	}
	if len(f) < 6 {
		return nil, corruptf("directory inode %d: short-form header truncated", in.ino)
	}
	count := int(f[0])
	inoSize := 4
	if f[1] != 0 {
		count = int(f[1])
		inoSize = 8
	}
	pos := 2 + inoSize
	ftype := x.sb.hasFtype()
	entries := make([]partinfo.DirEntry, 0, count)
	for i := 0; i < count; i++ {
		if pos+3 > len(f) {
			return nil, corruptf("directory inode %d: short-form entry %d truncated", in.ino, i)
		}
		namelen := int(f[pos])
		if namelen == 0 {
			return nil, corruptf("directory inode %d: empty name in entry %d", in.ino, i)
		}
		name := pos + 3
		next := name + namelen
		typ := typeUnknown
		if ftype {
			if next >= len(f) {
				return nil, corruptf("directory inode %d: short-form entry %d truncated", in.ino, i)
			}
			typ = ftypeMode(f[next])
			next++
		}
		if next+inoSize > len(f) {
			return nil, corruptf("directory inode %d: short-form entry %d truncated", in.ino, i)
		}
		var ino uint64
		if inoSize == 8 {
			ino = binary.BigEndian.Uint64(f[next:])
		} else {
			ino = uint64(binary.BigEndian.Uint32(f[next:]))
		}
		entries = append(entries, partinfo.DirEntry{Name: string(f[name : name+namelen]), Ino: ino, Type: typ})
		pos = next + inoSize
	}
	return entries, nil
}

// parseDirBlocks decodes every data block of a block, leaf or node
// directory. The leaf, node and free-index blocks only speed up lookups
// in the kernel; the data blocks hold every entry.
func (x *xfs) parseDirBlocks(in *inode) ([]partinfo.DirEntry, error) {
	m, err := x.extentMap(in)
	if err != nil {
		return nil, err
	}
	leafFsb := uint64(dirLeafOffset) >> x.geo.blockLog
	step := x.geo.dirBlkFsb
	buf := make([]byte, x.geo.dirBlkSize)
	var entries []partinfo.DirEntry
	next := uint64(0) // first directory block not yet parsed
	for _, e := range m {
		if e.off >= leafFsb {
			break
		}
		first := e.off &^ (step - 1)
		if first < next {
			first = next
		}
		for db := first; db < e.end() && db < leafFsb; db += step {
			if err := x.readFileBlocks(in, m, db, buf); err != nil {
				return nil, err
			}
			entries, err = x.parseDataBlock(in, db, buf, entries)
			if err != nil {
				return nil, err
			}
			next = db + step
		}
	}
	return entries, nil
}

// readFileBlocks fills buf from the file blocks starting at fb, which must
// all be mapped by written extents.
func (x *xfs) readFileBlocks(in *inode, m []extent, fb uint64, buf []byte) error {
	bs := x.geo.blockSize
	for done := int64(0); done < int64(len(buf)); {
		cur := fb + uint64(done/bs)
		i := findExtent(m, cur)
		if i == len(m) || m[i].off > cur || m[i].unwritten {
			return corruptf("inode %d: metadata block %d is not mapped", in.ino, cur)
		}
		e := m[i]
		n := int64(e.end()-cur) * bs
		if n > int64(len(buf))-done {
			n = int64(len(buf)) - done
		}
		if err := x.readRaw(buf[done:done+n], e.phys+int64(cur-e.off)*bs); err != nil {
			return fmt.Errorf("inode %d: read block %d: %w", in.ino, cur, err)
		}
		done += n
	}
	return nil
}

// parseDataBlock appends the entries of one directory data block.
func (x *xfs) parseDataBlock(in *inode, db uint64, b []byte, entries []partinfo.DirEntry) ([]partinfo.DirEntry, error) {
	be := binary.BigEndian
	magic := be.Uint32(b)
	hdr, end := dirDataHdrV4, len(b)
	var blockForm bool
	if x.sb.v5() {
		hdr = dirDataHdrV5
		if magic != dirBlockMagicV5 && magic != dirDataMagicV5 {
			return nil, corruptf("directory inode %d block %d: bad magic %#x", in.ino, db, magic)
		}
		if !crcOK(b, 4) {
			return nil, corruptf("directory inode %d block %d: CRC mismatch", in.ino, db)
		}
		if owner := be.Uint64(b[40:]); owner != in.ino {
			return nil, corruptf("directory inode %d block %d: owned by inode %d", in.ino, db, owner)
		}
		blockForm = magic == dirBlockMagicV5
	} else {
		if magic != dirBlockMagicV4 && magic != dirDataMagicV4 {
			return nil, corruptf("directory inode %d block %d: bad magic %#x", in.ino, db, magic)
		}
		blockForm = magic == dirBlockMagicV4
	}
	if blockForm {
		count := int64(be.Uint32(b[len(b)-8:]))
		end = len(b) - 8 - int(min(count, int64(len(b))))*8
		if end < hdr {
			return nil, corruptf("directory inode %d: block tail of %d leaf entries overruns the block", in.ino, count)
		}
	}
	ftype := x.sb.hasFtype()
	for pos := hdr; pos < end; {
		if pos+8 > end {
			return nil, corruptf("directory inode %d block %d: entry at %d truncated", in.ino, db, pos)
		}
		if be.Uint16(b[pos:]) == 0xffff {
			length := int(be.Uint16(b[pos+2:]))
			if length < 8 || length%8 != 0 || pos+length > end {
				return nil, corruptf("directory inode %d block %d: free space of %d bytes at %d", in.ino, db, length, pos)
			}
			pos += length
			continue
		}
		ino := be.Uint64(b[pos:])
		namelen := int(b[pos+8])
		size := 8 + 1 + namelen + 2
		if ftype {
			size++
		}
		size = (size + 7) &^ 7
		if namelen == 0 || pos+size > end {
			return nil, corruptf("directory inode %d block %d: entry at %d (name length %d) overruns", in.ino, db, pos, namelen)
		}
		name := string(b[pos+9 : pos+9+namelen])
		typ := typeUnknown
		if ftype {
			typ = ftypeMode(b[pos+9+namelen])
		}
		if name != "." && name != ".." {
			entries = append(entries, partinfo.DirEntry{Name: name, Ino: ino, Type: typ})
		}
		pos += size
	}
	return entries, nil
}

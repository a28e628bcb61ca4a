package ext4

import (
	"encoding/binary"
	"fmt"
	"io/fs"

	"github.com/cairnbackup/cairn/partinfo"
)

// maxDirSize bounds the directories this reader will load (ext4's largest
// legitimate directories, with largedir, stay far below this).
const maxDirSize = 1 << 30

// dirChunkBlocks is how many directory blocks are read per underlying read.
const dirChunkBlocks = 64

// dirIndex is a parsed directory: entries in on-disk order and a name index.
type dirIndex struct {
	entries []partinfo.DirEntry
	byName  map[string]uint64
	parent  uint64
}

// direntType maps the dirent file_type byte to type bits.
func direntType(t byte) (fs.FileMode, bool) {
	switch t {
	case 1:
		return 0, true
	case 2:
		return fs.ModeDir, true
	case 3:
		return fs.ModeDevice | fs.ModeCharDevice, true
	case 4:
		return fs.ModeDevice, true
	case 5:
		return fs.ModeNamedPipe, true
	case 6:
		return fs.ModeSocket, true
	case 7:
		return fs.ModeSymlink, true
	}
	return 0, false
}

// loadDir returns the (cached) parsed directory of inode n.
func (f *FS) loadDir(n *inode) (*dirIndex, error) {
	if d, ok := f.dirs.Get(n.ino); ok {
		return d, nil
	}
	if n.typ() != modeDir {
		return nil, fmt.Errorf("inode %d: %w", n.ino, partinfo.ErrNotDir)
	}
	if n.size > maxDirSize {
		return nil, fmt.Errorf("directory %d size %d absurd: %w", n.ino, n.size, partinfo.ErrCorrupt)
	}
	d := &dirIndex{byName: make(map[string]uint64)}
	if n.flags&flagInlineData != 0 {
		if err := f.parseInlineDir(n, d); err != nil {
			return nil, fmt.Errorf("inline directory %d: %w", n.ino, err)
		}
	} else if err := f.parseBlockDir(n, d); err != nil {
		return nil, fmt.Errorf("directory %d: %w", n.ino, err)
	}
	f.fillUnknownTypes(d)
	f.dirs.Add(n.ino, d, len(d.entries)+1)
	return d, nil
}

func (f *FS) parseBlockDir(n *inode, d *dirIndex) error {
	bs := f.sb.blockSize
	if n.size%bs != 0 {
		return fmt.Errorf("size %d is not a multiple of the block size: %w", n.size, partinfo.ErrCorrupt)
	}
	buf := make([]byte, min(n.size, dirChunkBlocks*bs))
	for off := int64(0); off < n.size; off += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), n.size-off)]
		if _, err := f.readContent(n, chunk, off); err != nil {
			return err
		}
		for b := int64(0); b < int64(len(chunk)); b += bs {
			if err := f.parseDirBlock(chunk[b:b+bs], d); err != nil {
				return fmt.Errorf("block %d: %w", (off+b)/bs, err)
			}
		}
	}
	return nil
}

// parseInlineDir parses a directory stored in the inode: the parent inode
// number, then entries in the rest of i_block and in system.data.
func (f *FS) parseInlineDir(n *inode, d *dirIndex) error {
	d.parent = uint64(binary.LittleEndian.Uint32(n.iblock[0:]))
	if err := f.parseDirBlock(n.iblock[4:], d); err != nil {
		return err
	}
	if n.size <= int64(len(n.iblock)) {
		return nil
	}
	rest, err := inlineDataXattr(n.inlineArea)
	if err != nil {
		return err
	}
	return f.parseDirBlock(rest, d)
}

// parseDirBlock parses linear directory entries filling b. Htree interior
// blocks and checksum tails are entries with inode 0 and are skipped.
func (f *FS) parseDirBlock(b []byte, d *dirIndex) error {
	le := binary.LittleEndian
	for pos := 0; pos < len(b); {
		if pos+8 > len(b) {
			return fmt.Errorf("directory entry header at %d overruns the block: %w", pos, partinfo.ErrCorrupt)
		}
		ino := uint64(le.Uint32(b[pos:]))
		recLen := int(le.Uint16(b[pos+4:]))
		if f.sb.blockSize == 65536 && (recLen == 0 || recLen == 65535) {
			recLen = 65536
		}
		nameLen := int(b[pos+6])
		ftype := b[pos+7]
		if !f.sb.hasFiletype() {
			nameLen |= int(ftype) << 8
			ftype = 0
		}
		if recLen < 8 || recLen%4 != 0 || pos+recLen > len(b) || 8+nameLen > recLen {
			return fmt.Errorf("directory entry at %d: rec_len %d name_len %d invalid: %w", pos, recLen, nameLen, partinfo.ErrCorrupt)
		}
		if ino != 0 && nameLen > 0 {
			name := string(b[pos+8 : pos+8+nameLen])
			if ino > uint64(f.sb.inodesCount) {
				return fmt.Errorf("entry %q points to inode %d beyond %d: %w", name, ino, f.sb.inodesCount, partinfo.ErrCorrupt)
			}
			switch name {
			case ".":
			case "..":
				d.parent = ino
			default:
				if _, dup := d.byName[name]; !dup {
					typ, known := direntType(ftype)
					if !known {
						typ = fs.ModeIrregular // resolved by fillUnknownTypes
					}
					d.byName[name] = ino
					d.entries = append(d.entries, partinfo.DirEntry{Name: name, Ino: ino, Type: typ})
				}
			}
		}
		pos += recLen
	}
	return nil
}

// fillUnknownTypes stats entries whose dirent carries no file type (ext2
// without the filetype feature).
func (f *FS) fillUnknownTypes(d *dirIndex) {
	for i := range d.entries {
		e := &d.entries[i]
		if e.Type != fs.ModeIrregular {
			continue
		}
		if n, err := f.readInode(e.Ino); err == nil {
			e.Type = goMode(n.mode).Type()
		} // else: left as ModeIrregular; Stat on the entry reports the error
	}
}

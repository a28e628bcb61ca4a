package ext4

import (
	"encoding/binary"
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	extentMagic    = 0xF30A
	maxExtentDepth = 5 // EXT4_MAX_EXTENT_DEPTH
	initMaxLen     = 32768
)

// loadExtentMap walks an inode's extent tree into a fileMap.
func (f *FS) loadExtentMap(n *inode) (*fileMap, error) {
	m := &fileMap{}
	root := n.iblock[:]
	depth, err := checkExtentHeader(root, -1)
	if err != nil {
		return nil, fmt.Errorf("extent root: %w", err)
	}
	if depth > maxExtentDepth {
		return nil, fmt.Errorf("extent tree depth %d exceeds %d: %w", depth, maxExtentDepth, partinfo.ErrCorrupt)
	}
	if err := f.walkExtentNode(n, m, root, depth); err != nil {
		return nil, err
	}
	return m, nil
}

// checkExtentHeader validates an extent node header and returns its depth.
// wantDepth < 0 accepts any depth (the root).
func checkExtentHeader(b []byte, wantDepth int) (int, error) {
	le := binary.LittleEndian
	if len(b) < 12 || le.Uint16(b[0:]) != extentMagic {
		return 0, fmt.Errorf("bad extent header magic: %w", partinfo.ErrCorrupt)
	}
	entries, max, depth := int(le.Uint16(b[2:])), int(le.Uint16(b[4:])), int(le.Uint16(b[6:]))
	if max == 0 || entries > max || 12+12*max > len(b) {
		return 0, fmt.Errorf("extent header entries %d max %d do not fit %d bytes: %w", entries, max, len(b), partinfo.ErrCorrupt)
	}
	if wantDepth >= 0 && depth != wantDepth {
		return 0, fmt.Errorf("extent node depth %d, expected %d: %w", depth, wantDepth, partinfo.ErrCorrupt)
	}
	return depth, nil
}

// walkExtentNode appends the extents below node (already validated) to m.
// Depth strictly decreases on the way down and logical blocks must strictly
// increase across all leaves, so corrupt trees cannot loop.
func (f *FS) walkExtentNode(n *inode, m *fileMap, node []byte, depth int) error {
	le := binary.LittleEndian
	entries := int(le.Uint16(node[2:]))
	for i := 0; i < entries; i++ {
		e := node[12+12*i : 24+12*i]
		if depth == 0 {
			logical := uint64(le.Uint32(e[0:]))
			length := uint64(le.Uint16(e[4:]))
			unwritten := false
			if length > initMaxLen {
				length -= initMaxLen
				unwritten = true
			}
			phys := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if length == 0 {
				continue
			}
			if err := f.checkPhysical(phys, length); err != nil {
				return fmt.Errorf("extent at logical %d: %w", logical, err)
			}
			if err := m.appendRun(run{logical: logical, length: length, physical: phys, unwritten: unwritten}); err != nil {
				return err
			}
			continue
		}
		child := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		if err := f.checkPhysical(child, 1); err != nil {
			return fmt.Errorf("extent index: %w", err)
		}
		blk := make([]byte, f.sb.blockSize)
		if err := f.readFull(blk, int64(child)*f.sb.blockSize); err != nil {
			return fmt.Errorf("read extent block %d: %w", child, err)
		}
		if _, err := checkExtentHeader(blk, depth-1); err != nil {
			return fmt.Errorf("extent block %d: %w", child, err)
		}
		if le.Uint16(blk[2:]) == 0 {
			return fmt.Errorf("empty extent block %d: %w", child, partinfo.ErrCorrupt)
		}
		if f.sb.hasMetadataCsum() {
			tail := 12 + 12*int(le.Uint16(blk[4:]))
			if tail+4 <= len(blk) {
				want := le.Uint32(blk[tail:])
				if got := crc32c(n.csumSeed, blk[:tail]); got != want {
					return fmt.Errorf("extent block %d checksum %#x, computed %#x: %w", child, want, got, partinfo.ErrCorrupt)
				}
			}
		}
		if err := f.walkExtentNode(n, m, blk, depth-1); err != nil {
			return err
		}
	}
	return nil
}

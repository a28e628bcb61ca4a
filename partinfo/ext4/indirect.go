package ext4

import (
	"encoding/binary"
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

// loadIndirectMap reads an ext2/ext3 block map: 12 direct pointers, then
// single, double and triple indirect blocks. Zero pointers are holes. Only
// logical blocks below the file size are walked, which bounds the work by
// the file size even on a corrupt image.
func (f *FS) loadIndirectMap(n *inode) (*fileMap, error) {
	bs := uint64(f.sb.blockSize)
	limit := (uint64(n.size) + bs - 1) / bs
	w := &indirectWalker{f: f, m: &fileMap{}, limit: limit, ppb: bs / 4}
	le := binary.LittleEndian
	var logical uint64
	for i := 0; i < 12 && logical < limit; i++ {
		if err := w.add(logical, uint64(le.Uint32(n.iblock[4*i:]))); err != nil {
			return nil, err
		}
		logical++
	}
	span := w.ppb
	for level := 1; level <= 3 && logical < limit; level++ {
		ptr := uint64(le.Uint32(n.iblock[4*(11+level):]))
		if err := w.walk(ptr, level, logical); err != nil {
			return nil, err
		}
		logical += span
		span *= w.ppb
	}
	return w.m, nil
}

type indirectWalker struct {
	f     *FS
	m     *fileMap
	limit uint64 // logical blocks at or beyond this are ignored
	ppb   uint64 // pointers per block
	reads uint64 // indirect blocks read so far
}

// add maps one logical block to a physical one (0 = hole).
func (w *indirectWalker) add(logical, phys uint64) error {
	if phys == 0 {
		return nil
	}
	if err := w.f.checkPhysical(phys, 1); err != nil {
		return fmt.Errorf("block pointer for logical %d: %w", logical, err)
	}
	return w.m.appendRun(run{logical: logical, length: 1, physical: phys})
}

// walk descends an indirect block of the given level (1 = single) whose
// first mapped logical block is first.
func (w *indirectWalker) walk(ptr uint64, level int, first uint64) error {
	if ptr == 0 || first >= w.limit {
		return nil
	}
	if err := w.f.checkPhysical(ptr, 1); err != nil {
		return fmt.Errorf("indirect block: %w", err)
	}
	// A sane map never reads more indirect blocks than the filesystem has.
	if w.reads++; w.reads > w.f.sb.blocksCount {
		return fmt.Errorf("indirect map reads more blocks than exist: %w", partinfo.ErrCorrupt)
	}
	blk := make([]byte, w.f.sb.blockSize)
	if err := w.f.readFull(blk, int64(ptr)*w.f.sb.blockSize); err != nil {
		return fmt.Errorf("read indirect block %d: %w", ptr, err)
	}
	span := uint64(1)
	for i := 1; i < level; i++ {
		span *= w.ppb
	}
	for i := uint64(0); i < w.ppb; i++ {
		logical := first + i*span
		if logical >= w.limit {
			break
		}
		p := uint64(binary.LittleEndian.Uint32(blk[4*i:]))
		var err error
		if level == 1 {
			err = w.add(logical, p)
		} else {
			err = w.walk(p, level-1, logical)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

package ext4

import (
	"encoding/binary"
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

// groupHasSuper reports whether block group g holds a superblock backup
// (and so, in meta_bg layouts, whether its descriptor block is shifted).
func (s *superblock) groupHasSuper(g uint64) bool {
	if g == 0 {
		return true
	}
	if s.compat&compatSparseSuper2 != 0 {
		return g == uint64(s.backupBGs[0]) || g == uint64(s.backupBGs[1])
	}
	if g <= 1 || s.roCompat&roCompatSparseSuper == 0 {
		return true
	}
	if g&1 == 0 {
		return false
	}
	return isPower(g, 3) || isPower(g, 5) || isPower(g, 7)
}

func isPower(n, base uint64) bool {
	for n%base == 0 {
		n /= base
	}
	return n == 1
}

// descriptorBlock returns the block holding the descriptors of meta group
// nr (the nr-th block of descriptors), as the kernel's descriptor_loc does.
func (s *superblock) descriptorBlock(nr uint64) uint64 {
	first := uint64(s.firstDataBlock)
	if s.incompat&incompatMetaBG == 0 || nr < uint64(s.firstMetaBG) {
		// Right after the superblock's block: block 1 with 1 KiB blocks
		// (even when bigalloc makes the first data block 0), else block 0.
		sbBlock := uint64(0)
		if s.blockSize == 1024 {
			sbBlock = 1
		}
		return sbBlock + nr + 1
	}
	perBlock := uint64(s.blockSize) / uint64(s.descSize)
	bg := perBlock * nr
	var shift uint64
	if s.groupHasSuper(bg) {
		shift = 1
	}
	if s.blockSize == 1024 && nr == 0 && s.firstDataBlock == 0 {
		shift++
	}
	return first + bg*uint64(s.blocksPerGroup) + shift
}

// inodeTable returns the first block of group g's inode table.
func (f *FS) inodeTable(g uint64) (uint64, error) {
	if blk, ok := f.groups.Get(g); ok {
		return blk, nil
	}
	s := f.sb
	if g >= s.groupCount {
		return 0, fmt.Errorf("block group %d beyond %d groups: %w", g, s.groupCount, partinfo.ErrCorrupt)
	}
	perBlock := uint64(s.blockSize) / uint64(s.descSize)
	blk := s.descriptorBlock(g / perBlock)
	off := int64(blk)*s.blockSize + int64(g%perBlock)*int64(s.descSize)
	d := make([]byte, s.descSize)
	if err := f.readFull(d, off); err != nil {
		return 0, fmt.Errorf("read descriptor of group %d: %w", g, err)
	}
	table := uint64(binary.LittleEndian.Uint32(d[0x8:]))
	if s.descSize >= 64 {
		table |= uint64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	itBlocks := (uint64(s.inodesPerGroup)*uint64(s.inodeSize) + uint64(s.blockSize) - 1) / uint64(s.blockSize)
	if table == 0 || table+itBlocks > s.blocksCount {
		return 0, fmt.Errorf("inode table of group %d at block %d outside the filesystem: %w", g, table, partinfo.ErrCorrupt)
	}
	f.groups.Add(g, table, 1)
	return table, nil
}

// groupFreeBlocks sums the free block counts of every group descriptor
// (through the replayed journal), as the kernel (ext4_count_free_clusters)
// and e2fsck count free space: the superblock's own count is written
// only now and then while the filesystem is mounted, so an image of a
// running guest carries an old one. ok is false when a descriptor block
// cannot be read or the sum is impossible (the superblock's count is
// used then).
func (f *FS) groupFreeBlocks() (free uint64, ok bool) {
	s := f.sb
	perBlock := uint64(s.blockSize) / uint64(s.descSize)
	if perBlock == 0 || s.groupCount > 1<<22 {
		return 0, false
	}
	le := binary.LittleEndian
	blk := make([]byte, s.blockSize)
	for g := uint64(0); g < s.groupCount; g++ {
		if g%perBlock == 0 {
			if err := f.readFull(blk, int64(s.descriptorBlock(g/perBlock))*s.blockSize); err != nil {
				return 0, false
			}
		}
		d := blk[(g%perBlock)*uint64(s.descSize):]
		n := uint64(le.Uint16(d[0x0C:]))
		if s.descSize >= 64 {
			n |= uint64(le.Uint16(d[0x2C:])) << 16
		}
		free += n // clusters
	}
	free *= uint64(s.clusterSize / s.blockSize)
	if free > s.blocksCount {
		return 0, false
	}
	return free, true
}

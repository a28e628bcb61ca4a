package ext4

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	superblockOffset = 1024
	superblockSize   = 1024
	superMagic       = 0xEF53
	maxLogBlockSize  = 6 // 64 KiB blocks, the largest ext4 allows
)

// superblock holds the fields of the on-disk superblock this reader uses.
type superblock struct {
	inodesCount    uint32
	blocksCount    uint64
	freeBlocks     uint64
	firstDataBlock uint32
	blockSize      int64
	clusterSize    int64 // blockSize unless bigalloc
	blocksPerGroup uint32
	inodesPerGroup uint32
	revLevel       uint32
	firstIno       uint32
	inodeSize      uint32
	compat         uint32
	incompat       uint32
	roCompat       uint32
	uuid           [16]byte
	label          string
	descSize       uint32
	firstMetaBG    uint32
	checksumSeed   uint32
	backupBGs      [2]uint32
	journalIno     uint32
	flags          uint32    // s_flags (signed/unsigned directory hash)
	hashSeed       [4]uint32 // s_hash_seed for htree name hashes
	groupCount     uint64
}

func (s *superblock) has64bit() bool        { return s.incompat&incompat64bit != 0 }
func (s *superblock) hasMetadataCsum() bool { return s.roCompat&roCompatMetadataCsum != 0 }
func (s *superblock) hasFiletype() bool     { return s.incompat&incompatFiletype != 0 }

// parseSuperblock decodes and validates a 1024-byte superblock.
func parseSuperblock(b []byte) (*superblock, error) {
	if len(b) < superblockSize {
		return nil, fmt.Errorf("superblock truncated: %w", partinfo.ErrCorrupt)
	}
	le := binary.LittleEndian
	if m := le.Uint16(b[0x38:]); m != superMagic {
		return nil, fmt.Errorf("bad superblock magic %#x: %w", m, partinfo.ErrCorrupt)
	}
	s := &superblock{
		inodesCount:    le.Uint32(b[0x0:]),
		blocksCount:    uint64(le.Uint32(b[0x4:])),
		freeBlocks:     uint64(le.Uint32(b[0xC:])),
		firstDataBlock: le.Uint32(b[0x14:]),
		blocksPerGroup: le.Uint32(b[0x20:]),
		inodesPerGroup: le.Uint32(b[0x28:]),
		revLevel:       le.Uint32(b[0x4C:]),
		firstIno:       11,
		inodeSize:      128,
		compat:         le.Uint32(b[0x5C:]),
		incompat:       le.Uint32(b[0x60:]),
		roCompat:       le.Uint32(b[0x64:]),
		descSize:       32,
		firstMetaBG:    le.Uint32(b[0x104:]),
		checksumSeed:   le.Uint32(b[0x270:]),
		backupBGs:      [2]uint32{le.Uint32(b[0x24C:]), le.Uint32(b[0x250:])},
		journalIno:     le.Uint32(b[0xE0:]),
		flags:          le.Uint32(b[0x160:]),
		hashSeed:       [4]uint32{le.Uint32(b[0xEC:]), le.Uint32(b[0xF0:]), le.Uint32(b[0xF4:]), le.Uint32(b[0xF8:])},
	}
	if s.revLevel == 0 {
		// Original ext2 revision: no feature flags at all.
		s.compat, s.incompat, s.roCompat = 0, 0, 0
	} else {
		s.firstIno = le.Uint32(b[0x54:])
		s.inodeSize = uint32(le.Uint16(b[0x58:]))
	}
	copy(s.uuid[:], b[0x68:0x78])
	label := b[0x78:0x88]
	if i := strings.IndexByte(string(label), 0); i >= 0 {
		label = label[:i]
	}
	s.label = string(label)

	if s.hasMetadataCsum() {
		if t := b[0x175]; t != 1 {
			return nil, fmt.Errorf("unknown metadata checksum type %d: %w", t, partinfo.ErrCorrupt)
		}
		want := le.Uint32(b[0x3FC:])
		if got := crc32c(^uint32(0), b[:0x3FC]); got != want {
			return nil, fmt.Errorf("superblock checksum %#08x, computed %#08x: %w", want, got, partinfo.ErrCorrupt)
		}
	}
	if unknown := s.incompat &^ supportedIncompat; unknown != 0 {
		var names []string
		for bit := uint32(1); bit != 0; bit <<= 1 {
			if unknown&bit != 0 {
				if n, ok := incompatNames[bit]; ok {
					names = append(names, n)
				} else {
					names = append(names, fmt.Sprintf("%#x", bit))
				}
			}
		}
		return nil, fmt.Errorf("unsupported incompatible features: %s", strings.Join(names, ", "))
	}

	logBS := le.Uint32(b[0x18:])
	if logBS > maxLogBlockSize {
		return nil, fmt.Errorf("block size 2^(10+%d) out of range: %w", logBS, partinfo.ErrCorrupt)
	}
	s.blockSize = 1024 << logBS
	if s.has64bit() {
		s.blocksCount |= uint64(le.Uint32(b[0x150:])) << 32
		s.freeBlocks |= uint64(le.Uint32(b[0x158:])) << 32
		s.descSize = uint32(le.Uint16(b[0xFE:]))
		if s.descSize < 64 || s.descSize > 1024 || s.descSize&(s.descSize-1) != 0 {
			return nil, fmt.Errorf("group descriptor size %d invalid: %w", s.descSize, partinfo.ErrCorrupt)
		}
	}
	if s.incompat&incompatCsumSeed == 0 {
		// Without csum_seed the seed is derived from the UUID; with it,
		// s_checksum_seed already holds that value from mkfs time.
		s.checksumSeed = crc32c(^uint32(0), s.uuid[:])
	}
	// With bigalloc a group spans 8*blocksize clusters of 2^n blocks.
	var clusterShift uint32
	if s.roCompat&roCompatBigalloc != 0 {
		clusterShift = le.Uint32(b[0x1C:]) - logBS
		if le.Uint32(b[0x1C:]) < logBS || clusterShift > 16 {
			return nil, fmt.Errorf("cluster size 2^(10+%d) invalid: %w", le.Uint32(b[0x1C:]), partinfo.ErrCorrupt)
		}
	}
	s.clusterSize = s.blockSize << clusterShift
	switch {
	case s.inodeSize < 128 || s.inodeSize&(s.inodeSize-1) != 0 || int64(s.inodeSize) > s.blockSize:
		return nil, fmt.Errorf("inode size %d invalid: %w", s.inodeSize, partinfo.ErrCorrupt)
	case s.blocksPerGroup == 0 || int64(s.blocksPerGroup) > 8*s.blockSize<<clusterShift:
		return nil, fmt.Errorf("blocks per group %d invalid: %w", s.blocksPerGroup, partinfo.ErrCorrupt)
	case s.inodesPerGroup == 0 || int64(s.inodesPerGroup) > 8*s.blockSize:
		return nil, fmt.Errorf("inodes per group %d invalid: %w", s.inodesPerGroup, partinfo.ErrCorrupt)
	case s.blocksCount == 0 || s.blocksCount > 1<<48:
		return nil, fmt.Errorf("block count %d invalid: %w", s.blocksCount, partinfo.ErrCorrupt)
	case uint64(s.firstDataBlock) >= s.blocksCount:
		return nil, fmt.Errorf("first data block %d beyond block count %d: %w", s.firstDataBlock, s.blocksCount, partinfo.ErrCorrupt)
	case s.firstIno < 11 && s.revLevel > 0:
		return nil, fmt.Errorf("first inode %d invalid: %w", s.firstIno, partinfo.ErrCorrupt)
	}
	s.groupCount = (s.blocksCount - uint64(s.firstDataBlock) + uint64(s.blocksPerGroup) - 1) / uint64(s.blocksPerGroup)
	if uint64(s.inodesCount) > s.groupCount*uint64(s.inodesPerGroup) || s.inodesCount < 2 {
		return nil, fmt.Errorf("inode count %d does not fit %d groups of %d: %w",
			s.inodesCount, s.groupCount, s.inodesPerGroup, partinfo.ErrCorrupt)
	}
	return s, nil
}

// fsType names the filesystem generation by its features.
func (s *superblock) fsType() string {
	switch {
	case s.incompat&ext4OnlyIncompat != 0 || s.roCompat&ext4OnlyRoCompat != 0:
		return "ext4"
	case s.compat&compatHasJournal != 0:
		return "ext3"
	default:
		return "ext2"
	}
}

// uuidString formats the filesystem UUID the way blkid does.
func (s *superblock) uuidString() string {
	u := s.uuid
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

package xfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

const (
	sbMagic = 0x58465342 // "XFSB"

	versionNumMask   = 0x000f
	versionMoreBits  = 0x8000
	version2FtypeBit = 0x00000200 // sb_features2: directory entries carry a file type

	incompatFtype    = 0x0001
	incompatSpinodes = 0x0002
	incompatMetaUUID = 0x0004
	incompatBigtime  = 0x0008
	incompatRepair   = 0x0010
	incompatNrext64  = 0x0020
	incompatExchange = 0x0040
	incompatParent   = 0x0080
	// incompatKnown lists the incompatible features this reader understands
	// well enough to read files and directories correctly.
	incompatKnown = incompatFtype | incompatSpinodes | incompatMetaUUID | incompatBigtime |
		incompatRepair | incompatNrext64 | incompatExchange | incompatParent

	sbSize = 264 // bytes of the v5 superblock structure
)

// superblock holds the fields of the primary superblock this reader uses.
type superblock struct {
	blockSize  uint32
	dblocks    uint64
	uuid       [16]byte
	rootIno    uint64
	agBlocks   uint32
	agCount    uint32
	versionNum uint16
	sectSize   uint16
	inodeSize  uint16
	inoPBlock  uint16
	label      string
	blockLog   uint8
	inodeLog   uint8
	inoPBLog   uint8
	agBlkLog   uint8
	fdblocks   uint64
	dirBlkLog  uint8
	features2  uint32
	incompat   uint32
	rblocks    uint64
	logStart   uint64 // first filesystem block of an internal log (0: external log)
	logBlocks  uint32
}

// v5 reports a version 5 (CRC-enabled) filesystem.
func (sb *superblock) v5() bool { return sb.versionNum&versionNumMask == 5 }

// hasFtype reports whether directory entries record the file type.
func (sb *superblock) hasFtype() bool {
	if sb.v5() {
		return sb.incompat&incompatFtype != 0
	}
	return sb.versionNum&versionMoreBits != 0 && sb.features2&version2FtypeBit != 0
}

// bigtime reports whether inodes may carry 64-bit nanosecond timestamps.
func (sb *superblock) bigtime() bool { return sb.v5() && sb.incompat&incompatBigtime != 0 }

// readSuperblock reads, checks and decodes the primary superblock at off.
func readSuperblock(r io.ReaderAt, off int64) (*superblock, error) {
	head := make([]byte, 512)
	if _, err := r.ReadAt(head, off); err != nil {
		return nil, fmt.Errorf("xfs: read superblock: %w", err)
	}
	be := binary.BigEndian
	if be.Uint32(head) != sbMagic {
		return nil, fmt.Errorf("xfs: no superblock magic: %w", ErrNotXFS)
	}
	sb := &superblock{
		blockSize:  be.Uint32(head[4:]),
		dblocks:    be.Uint64(head[8:]),
		rblocks:    be.Uint64(head[16:]),
		rootIno:    be.Uint64(head[56:]),
		agBlocks:   be.Uint32(head[84:]),
		agCount:    be.Uint32(head[88:]),
		versionNum: be.Uint16(head[100:]),
		sectSize:   be.Uint16(head[102:]),
		inodeSize:  be.Uint16(head[104:]),
		inoPBlock:  be.Uint16(head[106:]),
		label:      string(bytes.TrimRight(head[108:120], "\x00 ")),
		blockLog:   head[120],
		inodeLog:   head[122],
		inoPBLog:   head[123],
		agBlkLog:   head[124],
		fdblocks:   be.Uint64(head[144:]),
		dirBlkLog:  head[192],
		features2:  be.Uint32(head[200:]),
		incompat:   be.Uint32(head[216:]),
		logStart:   be.Uint64(head[48:]),
		logBlocks:  be.Uint32(head[96:]),
	}
	copy(sb.uuid[:], head[32:48])
	if err := sb.validate(); err != nil {
		return nil, err
	}
	if sb.v5() {
		sect := head
		if int(sb.sectSize) > len(head) {
			sect = make([]byte, sb.sectSize)
			if _, err := r.ReadAt(sect, off); err != nil {
				return nil, fmt.Errorf("xfs: read superblock sector: %w", err)
			}
		}
		if !crcOK(sect[:sb.sectSize], 224) {
			return nil, corruptf("superblock CRC mismatch")
		}
		if unknown := sb.incompat &^ incompatKnown; unknown != 0 {
			return nil, fmt.Errorf("xfs: incompatible features %#x: %w", unknown, ErrUnsupported)
		}
	}
	return sb, nil
}

// validate checks the geometry so that every later computation is bounded.
func (sb *superblock) validate() error {
	switch v := sb.versionNum & versionNumMask; v {
	case 4, 5:
	default:
		return fmt.Errorf("xfs: superblock version %d: %w", v, ErrUnsupported)
	}
	pow2 := func(v uint64, lo, hi uint64) bool { return v >= lo && v <= hi && v&(v-1) == 0 }
	switch {
	case !pow2(uint64(sb.blockSize), 512, 65536) || uint32(1)<<sb.blockLog != sb.blockSize:
		return corruptf("bad block size %d (log %d)", sb.blockSize, sb.blockLog)
	case !pow2(uint64(sb.sectSize), 512, 32768):
		return corruptf("bad sector size %d", sb.sectSize)
	case !pow2(uint64(sb.inodeSize), 256, 2048) || uint16(1)<<sb.inodeLog != sb.inodeSize:
		return corruptf("bad inode size %d (log %d)", sb.inodeSize, sb.inodeLog)
	case uint32(sb.inoPBlock) != sb.blockSize/uint32(sb.inodeSize) || uint16(1)<<sb.inoPBLog != sb.inoPBlock:
		return corruptf("bad inodes per block %d (log %d)", sb.inoPBlock, sb.inoPBLog)
	case sb.agCount == 0 || sb.agBlocks < 64:
		return corruptf("bad AG geometry: %d AGs of %d blocks", sb.agCount, sb.agBlocks)
	case sb.agBlkLog > 31 || int(sb.agBlkLog) != bits.Len32(sb.agBlocks-1):
		return corruptf("bad AG block log %d for %d blocks", sb.agBlkLog, sb.agBlocks)
	case sb.dblocks == 0 || sb.dblocks > uint64(sb.agCount)*uint64(sb.agBlocks):
		return corruptf("data blocks %d exceed %d AGs of %d", sb.dblocks, sb.agCount, sb.agBlocks)
	case int(sb.blockLog)+int(sb.dirBlkLog) > 16:
		return corruptf("directory block log %d too large", sb.dirBlkLog)
	case sb.v5() && sb.inodeSize < 512:
		return corruptf("v5 inode size %d below 512", sb.inodeSize)
	}
	if sb.dblocks > (1<<62)/uint64(sb.blockSize) {
		return corruptf("filesystem size overflows")
	}
	return nil
}

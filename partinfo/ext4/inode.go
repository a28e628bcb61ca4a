package ext4

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
)

// Inode flags (i_flags) this reader looks at.
const (
	flagEncrypt    = 0x800
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagInlineData = 0x10000000
)

// Mode type bits (i_mode & 0xF000).
const (
	modeFIFO   = 0x1000
	modeChar   = 0x2000
	modeDir    = 0x4000
	modeBlock  = 0x6000
	modeReg    = 0x8000
	modeLink   = 0xA000
	modeSocket = 0xC000
)

const goodOldInodeSize = 128

// inode is a decoded on-disk inode. It is immutable once cached.
type inode struct {
	ino        uint64
	mode       uint16
	uid, gid   uint32
	nlink      uint16
	size       int64
	blocks     int64 // 512-byte units
	flags      uint32
	generation uint32
	fileACL    uint64
	iblock     [60]byte
	atime      time.Time
	mtime      time.Time
	ctime      time.Time
	inlineArea []byte // in-inode extended attribute area (after i_extra_isize)
	csumSeed   uint32 // per-inode metadata checksum seed
}

func (n *inode) typ() uint16 { return n.mode & 0xF000 }

// readInode loads inode ino, verifying its checksum where the fs has them.
func (f *FS) readInode(ino uint64) (*inode, error) {
	if n, ok := f.inodes.Get(ino); ok {
		return n, nil
	}
	s := f.sb
	if ino == 0 || ino > uint64(s.inodesCount) {
		return nil, fmt.Errorf("inode %d outside 1..%d: %w", ino, s.inodesCount, fs.ErrNotExist)
	}
	g := (ino - 1) / uint64(s.inodesPerGroup)
	idx := (ino - 1) % uint64(s.inodesPerGroup)
	table, err := f.inodeTable(g)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	// Inodes are read a table block at a time: a directory walk touches
	// neighbouring inodes, so one underlying read serves many Stat calls.
	byteOff := idx * uint64(s.inodeSize)
	blk := table + byteOff/uint64(s.blockSize)
	within := byteOff % uint64(s.blockSize)
	buf, ok := f.itable.Get(blk)
	if !ok {
		buf = make([]byte, s.blockSize)
		if err := f.readFull(buf, int64(blk)*s.blockSize); err != nil {
			return nil, fmt.Errorf("read inode %d: %w", ino, err)
		}
		f.itable.Add(blk, buf, len(buf))
	}
	n, err := f.parseInode(ino, buf[within:within+uint64(s.inodeSize)])
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	f.inodes.Add(ino, n, 1)
	return n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// parseInode decodes a raw inode of the superblock's inode size.
func (f *FS) parseInode(ino uint64, raw []byte) (*inode, error) {
	le := binary.LittleEndian
	s := f.sb
	if allZero(raw) || le.Uint16(raw[0:]) == 0 {
		return nil, fmt.Errorf("inode not in use: %w", fs.ErrNotExist)
	}
	extra := 0
	if len(raw) > goodOldInodeSize {
		extra = int(le.Uint16(raw[0x80:]))
		if goodOldInodeSize+extra > len(raw) || extra&3 != 0 {
			return nil, fmt.Errorf("extra inode size %d invalid: %w", extra, partinfo.ErrCorrupt)
		}
	}
	generation := le.Uint32(raw[0x64:])
	seed := crc32c(crc32c(s.checksumSeed, le32bytes(uint32(ino))), le32bytes(generation))
	if s.hasMetadataCsum() {
		if err := verifyInodeChecksum(raw, extra, seed); err != nil {
			return nil, err
		}
	}
	n := &inode{
		ino:        ino,
		mode:       le.Uint16(raw[0x0:]),
		uid:        uint32(le.Uint16(raw[0x2:])) | uint32(le.Uint16(raw[0x78:]))<<16,
		gid:        uint32(le.Uint16(raw[0x18:])) | uint32(le.Uint16(raw[0x7A:]))<<16,
		nlink:      le.Uint16(raw[0x1A:]),
		flags:      le.Uint32(raw[0x20:]),
		generation: generation,
		fileACL:    uint64(le.Uint32(raw[0x68:])) | uint64(le.Uint16(raw[0x76:]))<<32,
		csumSeed:   seed,
	}
	if n.nlink == 0 {
		// The kernel treats a zero link count as deleted (orphans aside,
		// which no directory entry reaches).
		return nil, fmt.Errorf("inode deleted (no links): %w", fs.ErrNotExist)
	}
	copy(n.iblock[:], raw[0x28:0x64])
	size := uint64(le.Uint32(raw[0x4:]))
	if n.typ() == modeReg || s.incompat&incompatLargeDir != 0 {
		size |= uint64(le.Uint32(raw[0x6C:])) << 32
	}
	if size > 1<<62 {
		return nil, fmt.Errorf("size %d absurd: %w", size, partinfo.ErrCorrupt)
	}
	n.size = int64(size)
	blocks := uint64(le.Uint32(raw[0x1C:]))
	if s.roCompat&roCompatHugeFile != 0 {
		blocks |= uint64(le.Uint16(raw[0x74:])) << 32
		if n.flags&flagHugeFile != 0 {
			blocks *= uint64(s.blockSize / 512)
		}
	}
	n.blocks = int64(blocks & (1<<62 - 1))
	if n.flags&flagInlineData != 0 && n.typ() == modeReg {
		// Like the kernel's getattr for files: report at least the inline bytes, so
		// that tools do not take the file for entirely sparse.
		n.blocks += (n.size + 511) >> 9
	}
	// The extra timestamp words exist only when i_extra_isize covers them.
	has := func(off int) bool { return off+4 <= goodOldInodeSize+extra }
	stamp := func(secOff, extraOff int) time.Time {
		sec := int64(int32(le.Uint32(raw[secOff:])))
		var nsec int64
		if has(extraOff) {
			x := le.Uint32(raw[extraOff:])
			sec += int64(x&3) << 32
			nsec = int64(x >> 2)
		}
		return time.Unix(sec, nsec)
	}
	n.atime = stamp(0x08, 0x8C)
	n.ctime = stamp(0x0C, 0x84)
	n.mtime = stamp(0x10, 0x88)
	if len(raw) > goodOldInodeSize+extra {
		n.inlineArea = append([]byte(nil), raw[goodOldInodeSize+extra:]...)
	}
	return n, nil
}

// verifyInodeChecksum checks the crc32c of a raw inode (metadata_csum).
func verifyInodeChecksum(raw []byte, extra int, seed uint32) error {
	le := binary.LittleEndian
	hasHi := len(raw) > goodOldInodeSize && extra >= 4
	want := uint32(le.Uint16(raw[0x7C:]))
	c := append([]byte(nil), raw...)
	c[0x7C], c[0x7D] = 0, 0
	if hasHi {
		want |= uint32(le.Uint16(raw[0x82:])) << 16
		c[0x82], c[0x83] = 0, 0
	}
	got := crc32c(seed, c)
	if !hasHi {
		got &= 0xFFFF
	}
	if got != want {
		return fmt.Errorf("inode checksum %#x, computed %#x: %w", want, got, partinfo.ErrCorrupt)
	}
	return nil
}

// goMode converts an ext4 i_mode to an fs.FileMode.
func goMode(m uint16) fs.FileMode {
	mode, known := partinfo.UnixMode(uint32(m))
	if !known {
		mode |= fs.ModeIrregular
	}
	return mode
}

// rdev decodes a device inode's number (stored in i_block) into the Linux
// "new" dev_t encoding: minor low byte, major in bits 8-19, minor high bits above.
func (n *inode) rdev() uint32 {
	t := n.typ()
	if t != modeChar && t != modeBlock {
		return 0
	}
	le := binary.LittleEndian
	if old := le.Uint32(n.iblock[0:]); old != 0 {
		major, minor := (old>>8)&0xFF, old&0xFF
		return minor | major<<8
	}
	return le.Uint32(n.iblock[4:])
}

// attr builds the public attributes of an inode.
func (n *inode) attr() partinfo.Attr {
	return partinfo.Attr{
		Ino:    n.ino,
		Mode:   goMode(n.mode),
		Uid:    n.uid,
		Gid:    n.gid,
		Nlink:  uint32(n.nlink),
		Size:   n.size,
		Blocks: n.blocks,
		Atime:  n.atime,
		Mtime:  n.mtime,
		Ctime:  n.ctime,
		Rdev:   n.rdev(),
	}
}

package xfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	inodeMagic = 0x494e // "IN"

	coreSizeV3 = 176
	coreSizeV2 = 100

	fmtDev     = 0
	fmtLocal   = 1
	fmtExtents = 2
	fmtBtree   = 3

	diflagRealtime = 0x0001
	diflag2Bigtime = 0x0008
	diflag2Nrext64 = 0x0010

	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

// inode is a decoded on-disk inode with a private copy of its data fork.
type inode struct {
	ino      uint64
	mode     uint16
	format   uint8
	uid      uint32
	gid      uint32
	nlink    uint32
	atime    time.Time
	mtime    time.Time
	ctime    time.Time
	size     int64
	nblocks  uint64
	nextents uint64
	flags    uint16
	rdev     uint32
	fork     []byte

	// The attribute fork: format, extent count and a private copy of its
	// bytes in the inode (nil when the inode has no attribute fork).
	aformat   uint8
	anextents uint64
	afork     []byte
}

// readInode reads and validates inode ino.
func (x *xfs) readInode(ino uint64) (*inode, error) {
	if in, ok := x.inodes.Get(ino); ok {
		return in, nil
	}
	off, ok := x.geo.inoToByte(ino)
	if !ok {
		return nil, corruptf("inode number %d outside the filesystem", ino)
	}
	buf := make([]byte, x.geo.inodeSize)
	if err := x.readRaw(buf, off); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", ino, err)
	}
	in, err := x.decodeInode(ino, buf)
	if err != nil {
		return nil, err
	}
	x.inodes.Add(ino, in, 1)
	return in, nil
}

// decodeInode checks and decodes one dinode buffer.
func (x *xfs) decodeInode(ino uint64, buf []byte) (*inode, error) {
	be := binary.BigEndian
	if be.Uint16(buf) != inodeMagic {
		return nil, corruptf("inode %d: bad magic %#x", ino, be.Uint16(buf))
	}
	version := buf[4]
	coreSize := coreSizeV2
	var flags2 uint64
	if x.sb.v5() {
		if version != 3 {
			return nil, corruptf("inode %d: version %d on a v5 filesystem", ino, version)
		}
		if !crcOK(buf, 100) {
			return nil, corruptf("inode %d: CRC mismatch", ino)
		}
		if got := be.Uint64(buf[152:]); got != ino {
			return nil, corruptf("inode %d: records number %d", ino, got)
		}
		coreSize = coreSizeV3
		flags2 = be.Uint64(buf[120:])
	} else if version != 1 && version != 2 {
		return nil, corruptf("inode %d: version %d", ino, version)
	}
	in := &inode{
		ino:     ino,
		mode:    be.Uint16(buf[2:]),
		format:  buf[5],
		uid:     be.Uint32(buf[8:]),
		gid:     be.Uint32(buf[12:]),
		nlink:   be.Uint32(buf[16:]),
		nblocks: be.Uint64(buf[64:]),
		flags:   be.Uint16(buf[90:]),
	}
	if version == 1 {
		in.nlink = uint32(be.Uint16(buf[6:]))
	}
	bigtime := flags2&diflag2Bigtime != 0
	in.atime = decodeTime(be.Uint64(buf[32:]), bigtime)
	in.mtime = decodeTime(be.Uint64(buf[40:]), bigtime)
	in.ctime = decodeTime(be.Uint64(buf[48:]), bigtime)
	size := be.Uint64(buf[56:])
	if size > math.MaxInt64 {
		return nil, corruptf("inode %d: size %d", ino, size)
	}
	in.size = int64(size)
	if flags2&diflag2Nrext64 != 0 {
		in.nextents = be.Uint64(buf[24:])
		in.anextents = uint64(be.Uint32(buf[76:]))
	} else {
		in.nextents = uint64(be.Uint32(buf[76:]))
		in.anextents = uint64(be.Uint16(buf[80:]))
	}
	forkSize := len(buf) - coreSize
	if forkoff := int(buf[82]) * 8; forkoff != 0 {
		if forkoff > forkSize {
			return nil, corruptf("inode %d: attribute fork offset %d beyond %d", ino, forkoff, forkSize)
		}
		forkSize = forkoff
		in.aformat = buf[83]
		in.afork = append([]byte(nil), buf[coreSize+forkoff:]...)
	}
	in.fork = append([]byte(nil), buf[coreSize:coreSize+forkSize]...)
	switch in.mode & sIFMT {
	case sIFCHR, sIFBLK:
		if in.format == fmtDev && len(in.fork) >= 4 {
			in.rdev = linuxDev(be.Uint32(in.fork))
		}
	case sIFREG, sIFDIR, sIFLNK, sIFIFO, sIFSOCK:
	default:
		return nil, corruptf("inode %d: unknown file type %#o", ino, in.mode&sIFMT)
	}
	return in, nil
}

// linuxDev converts XFS's on-disk (SysV style) device number into the
// Linux new_encode_dev form used by stat and FUSE.
func linuxDev(d uint32) uint32 {
	major := (d >> 18) & 0x1ff
	minor := d & 0x3ffff
	return (minor & 0xff) | (major << 8) | ((minor &^ 0xff) << 12)
}

// decodeTime converts an on-disk timestamp. Classic timestamps hold signed
// seconds and nanoseconds; bigtime ones hold nanoseconds since 1901-12-13.
func decodeTime(v uint64, bigtime bool) time.Time {
	if bigtime {
		const epochOffset = int64(1) << 31
		sec := int64(v/1e9) - epochOffset
		return time.Unix(sec, int64(v%1e9))
	}
	sec := int64(int32(uint32(v >> 32)))
	nsec := int64(uint32(v))
	if nsec >= 1e9 {
		nsec = 0
	}
	return time.Unix(sec, nsec)
}

// fileMode converts a Unix mode into a Go fs.FileMode.
func fileMode(m uint16) fs.FileMode {
	mode, _ := partinfo.UnixMode(uint32(m))
	return mode
}

// typeMode returns only the Go type bits of a Unix mode.
func typeMode(m uint16) fs.FileMode { return fileMode(m).Type() }

// attr converts the inode into the shared attribute form.
func (in *inode) attr(blockSize int64) partinfo.Attr {
	blocks := int64(0)
	if in.nblocks < uint64(math.MaxInt64/blockSize) {
		blocks = int64(in.nblocks) * (blockSize / 512)
	}
	return partinfo.Attr{
		Ino:    in.ino,
		Mode:   fileMode(in.mode),
		Uid:    in.uid,
		Gid:    in.gid,
		Nlink:  in.nlink,
		Size:   in.size,
		Blocks: blocks,
		Atime:  in.atime,
		Mtime:  in.mtime,
		Ctime:  in.ctime,
		Rdev:   in.rdev,
	}
}

func (in *inode) isDir() bool     { return in.mode&sIFMT == sIFDIR }
func (in *inode) isReg() bool     { return in.mode&sIFMT == sIFREG }
func (in *inode) isSymlink() bool { return in.mode&sIFMT == sIFLNK }

package xfs

import (
	"encoding/binary"
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	symlinkMagic  = 0x58534c4d // "XSLM"
	symlinkHdrV5  = 56
	symlinkMaxLen = 1024
	// symlinkMaxBlocks bounds a remote target: 1024 bytes in 512-byte blocks.
	symlinkMaxBlocks = 3
)

// readlink returns the target of symlink inode in.
func (x *xfs) readlink(in *inode) (string, error) {
	if !in.isSymlink() {
		return "", fmt.Errorf("xfs: inode %d: %w", in.ino, partinfo.ErrNotSymlink)
	}
	if in.size <= 0 || in.size > symlinkMaxLen {
		return "", corruptf("symlink inode %d: target length %d", in.ino, in.size)
	}
	size := int(in.size)
	if in.format == fmtLocal {
		if size > len(in.fork) {
			return "", corruptf("symlink inode %d: %d-byte target exceeds the inode", in.ino, size)
		}
		return string(in.fork[:size]), nil
	}
	m, err := x.extentMap(in)
	if err != nil {
		return "", err
	}
	target := make([]byte, 0, size)
	blocks := uint64(0)
	for _, e := range m {
		if len(target) == size {
			break
		}
		blocks += e.count
		if blocks > symlinkMaxBlocks || e.unwritten {
			return "", corruptf("symlink inode %d: bad remote mapping", in.ino)
		}
		buf := make([]byte, int64(e.count)*x.geo.blockSize)
		if err := x.readRaw(buf, e.phys); err != nil {
			return "", fmt.Errorf("symlink inode %d: %w", in.ino, err)
		}
		data := buf
		if x.sb.v5() {
			// One header per extent: the kernel reads each mapping as one buffer.
			be := binary.BigEndian
			switch {
			case be.Uint32(buf) != symlinkMagic:
				return "", corruptf("symlink inode %d: bad remote block magic", in.ino)
			case !crcOK(buf, 12):
				return "", corruptf("symlink inode %d: remote block CRC mismatch", in.ino)
			case be.Uint64(buf[32:]) != in.ino:
				return "", corruptf("symlink inode %d: remote block owned by inode %d", in.ino, be.Uint64(buf[32:]))
			case int(be.Uint32(buf[4:])) != len(target):
				return "", corruptf("symlink inode %d: remote block offset %d, want %d", in.ino, be.Uint32(buf[4:]), len(target))
			}
			data = buf[symlinkHdrV5:]
		}
		n := min(len(data), size-len(target))
		target = append(target, data[:n]...)
	}
	if len(target) != size {
		return "", corruptf("symlink inode %d: found %d of %d target bytes", in.ino, len(target), size)
	}
	return string(target), nil
}

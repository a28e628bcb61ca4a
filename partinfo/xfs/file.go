package xfs

import (
	"fmt"
	"io"
	"math"

	"github.com/cairnbackup/cairn/partinfo"
)

// regular returns inode ino if it is a regular file this reader can read.
func (x *xfs) regular(ino uint64) (*inode, error) {
	in, err := x.readInode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isReg() {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, partinfo.ErrNotRegular)
	}
	if in.flags&diflagRealtime != 0 {
		if x.sb.rblocks == 0 {
			return nil, corruptf("inode %d: realtime flag without a realtime device", ino)
		}
		return nil, fmt.Errorf("xfs: inode %d lives on the realtime device: %w", ino, ErrUnsupported)
	}
	if in.format != fmtLocal && in.format != fmtExtents && in.format != fmtBtree {
		return nil, corruptf("file inode %d: data fork format %d", ino, in.format)
	}
	return in, nil
}

// blockByte converts a file block number to a byte offset, saturating.
func (x *xfs) blockByte(fb uint64) int64 {
	if fb > uint64(math.MaxInt64)>>x.geo.blockLog {
		return math.MaxInt64
	}
	return int64(fb) << x.geo.blockLog
}

// readFile fills p from offset off of a regular file: one ReadAt per
// extent piece, zeros for holes and unwritten extents.
func (x *xfs) readFile(in *inode, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("xfs: inode %d: negative offset %d", in.ino, off)
	}
	if off >= in.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > in.size-off {
		p = p[:in.size-off]
		eof = io.EOF
	}
	if in.format == fmtLocal {
		if in.size > int64(len(in.fork)) {
			return 0, corruptf("file inode %d: inline size %d exceeds the inode", in.ino, in.size)
		}
		return copy(p, in.fork[off:]), eof
	}
	m, err := x.extentMap(in)
	if err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	pos := off
	for i := findExtent(m, uint64(off>>x.geo.blockLog)); pos < end; i++ {
		next := end // where the current hole ends
		if i < len(m) {
			e := m[i]
			start, stop := x.blockByte(e.off), x.blockByte(e.end())
			if start <= pos {
				// Extend the read over following extents that continue
				// the same run on disk, so it stays one large read.
				for !e.unwritten && stop < end && i+1 < len(m) && !m[i+1].unwritten &&
					m[i+1].off == m[i].end() && m[i+1].phys == m[i].phys+int64(m[i].count)<<x.geo.blockLog {
					i++
					stop = x.blockByte(m[i].end())
				}
				n := min(stop, end) - pos
				dst := p[pos-off : pos-off+n]
				if e.unwritten {
					clear(dst)
				} else if err := x.readRaw(dst, e.phys+(pos-start)); err != nil {
					return int(pos - off), fmt.Errorf("xfs: inode %d at %d: %w", in.ino, pos, err)
				}
				pos += n
				continue
			}
			next = min(start, end)
			i-- // the extent still lies ahead
		}
		clear(p[pos-off : next-off])
		pos = next
	}
	return len(p), eof
}

// seekData returns the first offset >= off backed by written data.
func (x *xfs) seekData(in *inode, off int64) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("xfs: inode %d: negative offset %d", in.ino, off)
	}
	if off >= in.size {
		return 0, fmt.Errorf("xfs: inode %d offset %d: %w", in.ino, off, partinfo.ErrNoData)
	}
	if in.format == fmtLocal {
		return off, nil
	}
	m, err := x.extentMap(in)
	if err != nil {
		return 0, err
	}
	for i := findExtent(m, uint64(off>>x.geo.blockLog)); i < len(m); i++ {
		if m[i].unwritten {
			continue
		}
		pos := max(off, x.blockByte(m[i].off))
		if pos >= in.size {
			break
		}
		return pos, nil
	}
	return 0, fmt.Errorf("xfs: inode %d offset %d: %w", in.ino, off, partinfo.ErrNoData)
}

// seekHole returns the first offset >= off inside a hole (or unwritten
// extent), or the file size when data runs to the end.
func (x *xfs) seekHole(in *inode, off int64) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("xfs: inode %d: negative offset %d", in.ino, off)
	}
	if off >= in.size {
		return 0, fmt.Errorf("xfs: inode %d offset %d: %w", in.ino, off, partinfo.ErrNoData)
	}
	if in.format == fmtLocal {
		return in.size, nil
	}
	m, err := x.extentMap(in)
	if err != nil {
		return 0, err
	}
	pos := off
	for i := findExtent(m, uint64(off>>x.geo.blockLog)); i < len(m) && pos < in.size; i++ {
		if m[i].unwritten || x.blockByte(m[i].off) > pos {
			break
		}
		pos = x.blockByte(m[i].end())
	}
	return min(pos, in.size), nil
}

package btrfs

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"

	"github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zstd"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	extInline   = 0
	extRegular  = 1
	extPrealloc = 2
	compNone    = 0
	compZlib    = 1
	compLZO     = 2
	compZstd    = 3
	csumItem    = 128
	csumObject  = ^uint64(9) // -10
	flagNoSum   = 1
	maxExtent   = 128 << 20 // ram_bytes of one extent (btrfs: 128 MiB uncompressed)
	maxInline   = 64 << 10
	maxFileMaps = 256
)

// extent is one EXTENT_DATA item.
type extent struct {
	fileOff  int64
	length   int64 // bytes of the file it covers
	typ      uint8
	comp     uint8
	inline   []byte // inline data (compressed when comp != 0)
	ramBytes int64
	diskAddr uint64 // logical; 0 is a hole
	diskLen  int64
	offset   int64 // into the (decompressed) extent
}

type fileMap struct {
	extents []extent
}

// fileExtents returns the extents of a file (cached).
func (f *FS) fileExtents(ino uint64, in inode) (*fileMap, error) {
	f.mu.Lock()
	m := f.files[ino]
	f.mu.Unlock()
	if m != nil {
		return m, nil
	}
	ti, obj := split(ino)
	t := f.tree(ti)
	keys, datas, err := f.items(t.root, t.level, obj, extentData, 0)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	m = &fileMap{}
	for i, k := range keys {
		d := datas[i]
		if len(d) < 21 {
			return nil, corrupt("inode %d: extent item of %d bytes", obj, len(d))
		}
		e := extent{fileOff: int64(k.offset), ramBytes: int64(le.Uint64(d[8:])), comp: d[16], typ: d[20]}
		if d[17] != 0 || le.Uint16(d[18:]) != 0 {
			return nil, fmt.Errorf("btrfs: inode %d: encrypted or encoded extent: %w", obj, partinfo.ErrCorrupt)
		}
		if e.comp > compZstd {
			return nil, corrupt("inode %d: compression type %d", obj, e.comp)
		}
		switch e.typ {
		case extInline:
			e.inline = d[21:]
			e.length = e.ramBytes
			if e.comp == compNone {
				e.length = int64(len(e.inline))
			}
			if e.length > maxInline {
				return nil, corrupt("inode %d: inline extent of %d bytes", obj, e.length)
			}
		case extRegular, extPrealloc:
			if len(d) < 53 {
				return nil, corrupt("inode %d: extent item of %d bytes", obj, len(d))
			}
			e.diskAddr, e.diskLen = le.Uint64(d[21:]), int64(le.Uint64(d[29:]))
			e.offset, e.length = int64(le.Uint64(d[37:])), int64(le.Uint64(d[45:]))
			if e.length <= 0 || e.offset < 0 || e.diskLen < 0 || e.ramBytes < 0 || e.ramBytes > maxExtent ||
				(e.comp != compNone && e.offset+e.length > e.ramBytes) {
				return nil, corrupt("inode %d: extent at %d (offset %d, %d bytes of %d)", obj, e.fileOff, e.offset, e.length, e.ramBytes)
			}
		default:
			return nil, corrupt("inode %d: extent type %d", obj, e.typ)
		}
		if e.fileOff < 0 || e.fileOff+e.length < e.fileOff {
			return nil, corrupt("inode %d: extent at %d", obj, e.fileOff)
		}
		if n := len(m.extents); n > 0 && m.extents[n-1].fileOff+m.extents[n-1].length > e.fileOff {
			return nil, corrupt("inode %d: extents overlap at %d", obj, e.fileOff)
		}
		m.extents = append(m.extents, e)
	}
	f.mu.Lock()
	if len(f.files) >= maxFileMaps {
		f.files = map[uint64]*fileMap{}
	}
	f.files[ino] = m
	f.mu.Unlock()
	return m, nil
}

// ReadAt reads a regular file.
func (f *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	in, _, _, err := f.inode(ino)
	if err != nil {
		return 0, err
	}
	if in.mode&0o170000 != 0o100000 {
		return 0, fmt.Errorf("btrfs: inode %d: %w", ino, partinfo.ErrNotRegular)
	}
	return f.readFile(ino, in, p, off)
}

func (f *FS) readFile(ino uint64, in inode, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("btrfs: negative offset")
	}
	if off >= in.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > in.size-off {
		p, eof = p[:in.size-off], io.EOF
	}
	m, err := f.fileExtents(ino, in)
	if err != nil {
		return 0, err
	}
	// Bytes no extent covers (holes with no-holes, the tail past the
	// last extent) read as zeros; covered bytes are written by their
	// extent, so p is cleared only in the gaps.
	end := off + int64(len(p))
	pos := off
	i := sort.Search(len(m.extents), func(i int) bool { return m.extents[i].fileOff+m.extents[i].length > off })
	for ; i < len(m.extents) && m.extents[i].fileOff < end; i++ {
		e := &m.extents[i]
		lo, hi := max(off, e.fileOff), min(end, e.fileOff+e.length)
		clear(p[pos-off : lo-off])
		dst := p[lo-off : hi-off]
		if err := f.readExtent(e, in.flags&flagNoSum != 0, dst, lo-e.fileOff); err != nil {
			return 0, fmt.Errorf("btrfs: inode %d at %d: %w", ino, lo, err)
		}
		pos = hi
	}
	clear(p[pos-off:])
	return len(p), eof
}

// readExtent fills dst with the extent's bytes from rel (relative to the
// extent's file offset).
func (f *FS) readExtent(e *extent, noSum bool, dst []byte, rel int64) error {
	switch {
	case e.typ == extInline:
		data := e.inline
		if e.comp != compNone {
			var err error
			if data, err = decompress(e.comp, e.inline, e.ramBytes, f.sector); err != nil {
				return err
			}
		}
		n := 0
		if rel < int64(len(data)) {
			n = copy(dst, data[rel:])
		}
		clear(dst[n:])
		return nil
	case e.typ == extPrealloc || e.diskAddr == 0:
		clear(dst)
		return nil
	case e.comp == compNone:
		return f.readData(e.diskAddr+uint64(e.offset+rel), dst, noSum)
	}
	raw := make([]byte, e.diskLen)
	if err := f.readData(e.diskAddr, raw, noSum); err != nil {
		return err
	}
	data, err := decompress(e.comp, raw, e.ramBytes, f.sector)
	if err != nil {
		return err
	}
	n := 0
	if s := e.offset + rel; s < int64(len(data)) {
		n = copy(dst, data[s:])
	}
	clear(dst[n:])
	return nil
}

// readData reads logical bytes and verifies their sectors' checksums.
func (f *FS) readData(addr uint64, dst []byte, noSum bool) error {
	if noSum || f.csumRoot == 0 {
		return f.readLogical(dst, addr)
	}
	ss := uint64(f.sector)
	lo := addr / ss * ss
	hi := (addr + uint64(len(dst)) + ss - 1) / ss * ss
	// Sector-aligned reads (every read the page cache sends, at 4 KiB
	// sectors) are verified in the caller's buffer; others through a
	// bounce buffer of whole sectors. On a mismatch the caller gets the
	// error, never the bytes.
	buf, bounce := dst, lo != addr || hi-lo != uint64(len(dst))
	if bounce {
		buf = make([]byte, hi-lo)
	}
	if err := f.readLogical(buf, lo); err != nil {
		return err
	}
	w, err := f.csumsFor(lo, hi)
	if err != nil {
		return err
	}
	for s := lo; s < hi; s += ss {
		i := (s - w.lo) / ss
		if !w.has[i] {
			continue // a sector without a checksum (nodatasum extents)
		}
		if got := crc32.Checksum(buf[s-lo:s-lo+ss], castagnoli); got != w.sums[i] {
			return corrupt("data checksum of sector at logical %d: %08x, csum tree says %08x", s, got, w.sums[i])
		}
	}
	if bounce {
		copy(dst, buf[addr-lo:])
	}
	return nil
}

// csumWindowBytes is how much of the logical address space one csum tree
// walk covers: a sequential read of 128 KiB calls finds the checksums of
// the next 31 calls already decoded (4 KiB of CRCs at 4 KiB sectors).
const csumWindowBytes = 4 << 20

// csumWindow holds the data checksums of the sectors in [lo, hi): sums[i]
// is sector lo+i*sector's CRC-32C when has[i]. Never changed once built.
type csumWindow struct {
	lo, hi uint64
	sums   []uint32
	has    []bool
}

// csumsFor returns a window holding the checksums of [lo, hi): the last
// one when it covers the range, else a new one from lo, read from the
// csum tree (one walk instead of one per read call).
func (f *FS) csumsFor(lo, hi uint64) (*csumWindow, error) {
	f.mu.Lock()
	w := f.csumWin
	f.mu.Unlock()
	if w != nil && lo >= w.lo && hi <= w.hi {
		return w, nil
	}
	ss := uint64(f.sector)
	w = &csumWindow{lo: lo, hi: max(hi, lo+csumWindowBytes)}
	n := (w.hi - w.lo) / ss
	w.sums, w.has = make([]uint32, n), make([]bool, n)
	le := binary.LittleEndian
	err := f.walk(f.csumRoot, f.csumLevel, key{csumObject, csumItem, lo}, func(k key, d []byte) bool {
		if k.objectid != csumObject || k.typ != csumItem {
			return k.objectid < csumObject || (k.objectid == csumObject && k.typ < csumItem)
		}
		if k.offset >= w.hi {
			return false
		}
		for i := 0; i+4 <= len(d); i += 4 {
			s := k.offset + uint64(i/4)*ss
			if s >= w.lo && s < w.hi {
				w.sums[(s-w.lo)/ss], w.has[(s-w.lo)/ss] = le.Uint32(d[i:]), true
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.csumWin = w
	f.mu.Unlock()
	return w, nil
}

// decompress expands one compressed extent to ram bytes.
func decompress(comp uint8, src []byte, ram int64, sector uint32) ([]byte, error) {
	if ram < 0 || ram > maxExtent {
		return nil, corrupt("compressed extent of %d bytes", ram)
	}
	switch comp {
	case compZlib:
		zr, err := zlib.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, corrupt("zlib extent: %v", err)
		}
		out := make([]byte, ram)
		n, err := io.ReadFull(zr, out)
		if err != nil && err != io.ErrUnexpectedEOF {
			return nil, corrupt("zlib extent: %v", err)
		}
		return out[:n], nil
	case compZstd:
		// One frame, then zeros up to the sector: decode exactly the
		// frame.
		n, err := zstdFrameLen(src)
		if err != nil {
			return nil, err
		}
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(ram)+(1<<20)))
		if err != nil {
			return nil, corrupt("zstd extent: %v", err)
		}
		defer d.Close()
		out, err := d.DecodeAll(src[:n], make([]byte, 0, ram))
		if err != nil {
			return nil, corrupt("zstd extent: %v", err)
		}
		if int64(len(out)) > ram {
			out = out[:ram]
		}
		return out, nil
	case compLZO:
		return lzoExtent(src, ram, int(sector))
	}
	return nil, corrupt("compression %d", comp)
}

// zstdFrameLen returns the length of the zstd frame at the start of b
// (RFC 8878: header, blocks, optional checksum).
func zstdFrameLen(b []byte) (int, error) {
	if len(b) < 6 || binary.LittleEndian.Uint32(b) != 0xFD2FB528 {
		return 0, corrupt("zstd extent without a frame")
	}
	fhd := b[4]
	pos := 5
	single := fhd>>5&1 == 1
	if !single {
		pos++
	}
	pos += []int{0, 1, 2, 4}[fhd&3]
	fcs := []int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcs = 1
	}
	pos += fcs
	for {
		if pos+3 > len(b) {
			return 0, corrupt("zstd frame runs past the extent")
		}
		h := uint32(b[pos]) | uint32(b[pos+1])<<8 | uint32(b[pos+2])<<16
		pos += 3
		size := int(h >> 3)
		switch h >> 1 & 3 {
		case 1: // RLE
			size = 1
		case 3:
			return 0, corrupt("zstd block of reserved type")
		}
		pos += size
		if h&1 == 1 {
			break
		}
	}
	if fhd>>2&1 == 1 {
		pos += 4
	}
	if pos > len(b) {
		return 0, corrupt("zstd frame runs past the extent")
	}
	return pos, nil
}

// lzoExtent decodes btrfs's LZO framing: a 4-byte total length, then
// segments of a 4-byte length and LZO1X data, each expanding to at most
// one sector; a segment header never straddles a sector boundary.
func lzoExtent(src []byte, ram int64, sector int) ([]byte, error) {
	le := binary.LittleEndian
	if len(src) < 4 {
		return nil, corrupt("lzo extent of %d bytes", len(src))
	}
	total := int(le.Uint32(src))
	if total > len(src) || total < 4 {
		return nil, corrupt("lzo extent length %d of %d bytes", total, len(src))
	}
	out := make([]byte, 0, ram)
	pos := 4
	buf := make([]byte, sector)
	for pos < total && int64(len(out)) < ram {
		if rest := sector - pos%sector; rest < 4 {
			pos += rest
			if pos >= total {
				break
			}
		}
		if pos+4 > total {
			return nil, corrupt("lzo segment header past the extent")
		}
		n := int(le.Uint32(src[pos:]))
		pos += 4
		if n <= 0 || pos+n > total {
			return nil, corrupt("lzo segment of %d bytes", n)
		}
		k, err := lzo.Decompress(src[pos:pos+n], buf)
		if err != nil {
			return nil, corrupt("lzo segment: %v", err)
		}
		out = append(out, buf[:k]...)
		pos += n
	}
	if int64(len(out)) > ram {
		out = out[:ram]
	}
	return out, nil
}

// SeekData returns the first data offset at or after off (holes are gaps
// between extents, hole extents and prealloc extents).
func (f *FS) SeekData(ino uint64, off int64) (int64, error) {
	in, m, err := f.fileMapOf(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 || off >= in.size {
		return 0, partinfo.ErrNoData
	}
	for _, e := range m.extents {
		if e.fileOff+e.length <= off || isHole(&e) {
			continue
		}
		if s := max(off, e.fileOff); s < in.size {
			return s, nil
		}
	}
	return 0, partinfo.ErrNoData
}

// SeekHole returns the first hole offset at or after off (the size when none).
func (f *FS) SeekHole(ino uint64, off int64) (int64, error) {
	in, m, err := f.fileMapOf(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 || off >= in.size {
		return 0, partinfo.ErrNoData
	}
	pos := off
	for _, e := range m.extents {
		if e.fileOff+e.length <= pos {
			continue
		}
		if e.fileOff > pos || isHole(&e) {
			return pos, nil
		}
		pos = e.fileOff + e.length
	}
	return min(pos, in.size), nil
}

func isHole(e *extent) bool { return e.typ == extPrealloc || (e.typ == extRegular && e.diskAddr == 0) }

func (f *FS) fileMapOf(ino uint64) (inode, *fileMap, error) {
	in, _, _, err := f.inode(ino)
	if err != nil {
		return in, nil, err
	}
	if in.mode&0o170000 != 0o100000 {
		return in, nil, fmt.Errorf("btrfs: inode %d: %w", ino, partinfo.ErrNotRegular)
	}
	m, err := f.fileExtents(ino, in)
	return in, m, err
}

var _ partinfo.Filesystem = (*FS)(nil)

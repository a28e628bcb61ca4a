package ntfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairnbackup/cairn/partinfo"
	"www.velocidex.com/golang/go-ntfs/parser"
)

// Data-stream limits.
const (
	// maxFileClusters is the largest file NTFS implementations support:
	// 2^32 clusters (16 TiB at 4 KiB, 8 PiB at 2 MiB). A size or a runlist
	// beyond it is corruption, not a file to read as endless zeros.
	maxFileClusters = 1 << 32
	// maxUnitShift bounds the compression unit (2^shift clusters); Windows
	// writes only 4 (16 clusters).
	maxUnitShift = 8
	// lzntChunk is the uncompressed size of one LZNT1 chunk.
	lzntChunk = 4096
	// attrCompressed is the $DATA attribute header flag of compressed data.
	attrCompressed = 0x0001
)

// errVolume marks data runs that point outside the volume or reads the
// volume's reader cannot satisfy.
var errVolume = errors.New("data lies outside the readable volume")

// run is one run of a non-resident attribute: n clusters at file VCN vcn,
// stored at volume cluster lcn, or a hole when lcn < 0.
type run struct {
	vcn, lcn, n int64
}

// dataStream reads a non-resident $DATA attribute from its runlist. It
// replaces go-ntfs's reader, which returned wrong bytes for compressed
// files (a unit's trailing hole merged with following all-zero units)
// and zeros for runs past the volume.
type dataStream struct {
	vol      io.ReaderAt // the volume, offset 0 = boot sector
	volBytes int64       // bytes the volume can be read at
	cs       int64       // cluster size
	size     int64       // data size
	init     int64       // initialized size: beyond it the file reads zeros
	runs     []run       // sorted by vcn, contiguous from 0
	unit     int64       // compression unit in clusters; 0 when not compressed

	mu       sync.Mutex // guards the one-unit cache
	unitIdx  int64
	unitData []byte
}

// newDataStream decodes the runlists of the unnamed $DATA extents of m
// and validates them against the volume. The caller holds f.mu.
func (f *FS) newDataStream(ino uint64, m *parser.MFT_ENTRY) (*dataStream, error) {
	return f.newNamedStream(ino, m, "")
}

// newNamedStream is newDataStream for the $DATA stream called name (as
// go-ntfs names it; "" is the unnamed stream).
func (f *FS) newNamedStream(ino uint64, m *parser.MFT_ENTRY, name string) (*dataStream, error) {
	vcns := parser.GetAllVCNs(f.ctx, m, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, name)
	if len(vcns) == 0 {
		return nil, fmt.Errorf("MFT record %d: no $DATA attribute: %w", ino, partinfo.ErrCorrupt)
	}
	first := vcns[0]
	for _, a := range vcns {
		if a.Runlist_vcn_start() < first.Runlist_vcn_start() {
			first = a
		}
	}
	s := &dataStream{vol: f.vol, volBytes: f.volBytes, cs: f.ctx.ClusterSize, unitIdx: -1,
		size: int64(first.Actual_size()), init: int64(first.Initialized_size())}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("MFT record %d $DATA: %s: %w", ino, fmt.Sprintf(format, a...), partinfo.ErrCorrupt)
	}
	if s.cs <= 0 || s.cs&(s.cs-1) != 0 {
		return nil, bad("cluster size %d", s.cs)
	}
	if s.size < 0 || s.init < 0 || s.size > maxFileClusters*s.cs {
		return nil, bad("data size %d is beyond what NTFS can hold", s.size)
	}
	s.init = min(s.init, s.size)
	if uint16(*first.Flags())&attrCompressed != 0 {
		shift := first.Compression_unit_size()
		if shift == 0 || shift > maxUnitShift {
			return nil, bad("invalid compression unit 2^%d clusters", shift)
		}
		s.unit = 1 << shift
	}
	for _, a := range vcns {
		runs, err := f.decodeRunlist(a)
		if err != nil {
			return nil, bad("%v", err)
		}
		s.runs = append(s.runs, runs...)
	}
	sortRuns(s.runs)
	next := int64(0)
	volClusters := s.volBytes / s.cs
	for _, r := range s.runs {
		if r.vcn != next {
			return nil, bad("runlist has a gap or overlap at cluster %d (expected %d)", r.vcn, next)
		}
		if r.lcn >= 0 && r.lcn+r.n > volClusters {
			return nil, bad("run of %d clusters at cluster %d lies past the volume's %d clusters", r.n, r.lcn, volClusters)
		}
		next += r.n
	}
	if need := (s.size + s.cs - 1) / s.cs; next < need {
		return nil, bad("data size %d but the runs map only %d bytes", s.size, next*s.cs)
	}
	return s, nil
}

// sortRuns orders runs by VCN (extents come from several records).
func sortRuns(rs []run) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].vcn < rs[j-1].vcn; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// decodeRunlist decodes the mapping pairs of one non-resident extent.
func (f *FS) decodeRunlist(a *parser.NTFS_ATTRIBUTE) ([]run, error) {
	if a.IsResident() {
		return nil, fmt.Errorf("resident extent among non-resident ones")
	}
	n := int(a.Length())
	if n <= 0 || n > 1<<16 {
		return nil, fmt.Errorf("attribute length %d", n)
	}
	b := make([]byte, n)
	if got, _ := a.Reader.ReadAt(b, a.Offset); got != n {
		return nil, fmt.Errorf("attribute of %d bytes is cut short", n)
	}
	start, end := int64(a.Runlist_vcn_start()), int64(a.Runlist_vcn_end())
	if start < 0 || start > maxFileClusters {
		return nil, fmt.Errorf("extent starts at cluster %d", start)
	}
	var out []run
	vcn, lcn := start, int64(0)
	for i := int(a.Runlist_offset()); i < len(b) && b[i] != 0; {
		h := b[i]
		ln, on := int(h&0xF), int(h>>4)
		i++
		if ln == 0 || ln > 8 || on > 8 || i+ln+on > len(b) {
			return nil, fmt.Errorf("bad mapping pair header %#x", h)
		}
		length := leInt(b[i:i+ln], false)
		i += ln
		if length <= 0 || length > maxFileClusters {
			return nil, fmt.Errorf("run of %d clusters", length)
		}
		r := run{vcn: vcn, lcn: -1, n: length}
		if on > 0 {
			delta := leInt(b[i:i+on], true)
			i += on
			lcn += delta
			if lcn < 0 {
				return nil, fmt.Errorf("run at negative cluster %d", lcn)
			}
			r.lcn = lcn
		}
		out = append(out, r)
		vcn += length
		if vcn > maxFileClusters {
			return nil, fmt.Errorf("runs map beyond %d clusters", int64(maxFileClusters))
		}
	}
	if len(out) > 0 && vcn != end+1 {
		return nil, fmt.Errorf("runs end at cluster %d, the extent at %d", vcn, end+1)
	}
	return out, nil
}

// leInt decodes a little-endian integer of 1-8 bytes, sign-extended when signed.
func leInt(b []byte, signed bool) int64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if signed && len(b) < 8 && b[len(b)-1]&0x80 != 0 {
		v |= ^uint64(0) << (8 * len(b))
	}
	return int64(v)
}

// find returns the index of the run holding cluster vcn, or -1.
func (s *dataStream) find(vcn int64) int {
	lo, hi := 0, len(s.runs)
	for lo < hi {
		m := (lo + hi) / 2
		switch r := s.runs[m]; {
		case vcn < r.vcn:
			hi = m
		case vcn >= r.vcn+r.n:
			lo = m + 1
		default:
			return m
		}
	}
	return -1
}

// ReadAt fills p from off; the caller clips p to the data size.
func (s *dataStream) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if pos >= s.init {
			clear(p[done:])
			return len(p), nil
		}
		want := p[done:min(len(p), done+int(min(int64(len(p)-done), s.init-pos)))]
		var n int
		var err error
		if s.unit > 0 {
			n, err = s.readUnit(want, pos)
		} else {
			n, err = s.readPlain(want, pos)
		}
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// readPlain reads from the run holding pos, up to its end.
func (s *dataStream) readPlain(p []byte, pos int64) (int, error) {
	i := s.find(pos / s.cs)
	if i < 0 {
		return 0, fmt.Errorf("offset %d is not mapped by any run: %w", pos, partinfo.ErrCorrupt)
	}
	r := s.runs[i]
	in := pos - r.vcn*s.cs
	n := int(min(int64(len(p)), r.n*s.cs-in))
	if r.lcn < 0 {
		clear(p[:n])
		return n, nil
	}
	return n, s.readVolume(p[:n], r.lcn*s.cs+in)
}

// readVolume reads exactly len(p) bytes of the volume at off.
func (s *dataStream) readVolume(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > s.volBytes {
		return fmt.Errorf("read of %d bytes at volume offset %d past its end %d: %w", len(p), off, s.volBytes, errVolume)
	}
	n, err := s.vol.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at volume offset %d: %w", len(p), off, err)
}

// readUnit reads from the compression unit holding pos, up to its end.
func (s *dataStream) readUnit(p []byte, pos int64) (int, error) {
	ub := s.unit * s.cs
	u := pos / ub
	in := pos - u*ub
	n := int(min(int64(len(p)), ub-in))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unitIdx != u {
		data, err := s.loadUnit(u)
		if err != nil {
			return 0, err
		}
		if data == nil {
			// Stored uncompressed: read straight through the runs.
			return s.readPlainSpan(p[:n], pos)
		}
		s.unitIdx, s.unitData = u, data
	}
	copy(p[:n], s.unitData[in:])
	return n, nil
}

// readPlainSpan reads p at pos through as many runs as it crosses.
func (s *dataStream) readPlainSpan(p []byte, pos int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := s.readPlain(p[done:], pos+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// loadUnit returns the decompressed bytes of unit u: zeros when it is
// all holes, nil when it is stored uncompressed (no hole in it), else
// the LZNT1-decompressed clusters.
func (s *dataStream) loadUnit(u int64) ([]byte, error) {
	startVCN, endVCN := u*s.unit, (u+1)*s.unit
	var stored []run
	holes := int64(0)
	for i := s.find(startVCN); i >= 0 && i < len(s.runs) && s.runs[i].vcn < endVCN; i++ {
		r := s.runs[i]
		lo, hi := max(r.vcn, startVCN), min(r.vcn+r.n, endVCN)
		if r.lcn < 0 {
			holes += hi - lo
			continue
		}
		stored = append(stored, run{vcn: lo, lcn: r.lcn + lo - r.vcn, n: hi - lo})
	}
	ub := s.unit * s.cs
	switch {
	case len(stored) == 0:
		return make([]byte, ub), nil
	case holes == 0:
		return nil, nil
	}
	var src []byte
	for _, r := range stored {
		b := make([]byte, r.n*s.cs)
		if err := s.readVolume(b, r.lcn*s.cs); err != nil {
			return nil, err
		}
		src = append(src, b...)
	}
	out := make([]byte, ub)
	if err := lznt1Decompress(out, src); err != nil {
		return nil, fmt.Errorf("compression unit %d (file offset %d): %v: %w", u, u*ub, err, partinfo.ErrCorrupt)
	}
	return out, nil
}

// lznt1Decompress expands LZNT1 chunks from src into dst (pre-zeroed):
// every chunk yields 4096 bytes of dst, a short chunk is zero-filled.
func lznt1Decompress(dst, src []byte) error {
	out := 0
	for len(src) >= 2 && out < len(dst) {
		h := binary.LittleEndian.Uint16(src)
		if h == 0 {
			break
		}
		size := int(h&0xFFF) + 1
		if 2+size > len(src) {
			return fmt.Errorf("chunk of %d bytes overruns the unit", size)
		}
		chunk := src[2 : 2+size]
		src = src[2+size:]
		start, end := out, min(out+lzntChunk, len(dst))
		if h&0x8000 == 0 {
			copy(dst[out:end], chunk)
			out = end
			continue
		}
		for i := 0; i < len(chunk) && out < end; {
			flags := chunk[i]
			i++
			for bit := 0; bit < 8 && i < len(chunk) && out < end; bit++ {
				if flags&(1<<bit) == 0 {
					dst[out] = chunk[i]
					out++
					i++
					continue
				}
				if i+1 >= len(chunk) {
					return fmt.Errorf("truncated back-reference")
				}
				tok := int(binary.LittleEndian.Uint16(chunk[i:]))
				i += 2
				pos := out - start
				lg := 0
				for p := pos - 1; p >= 0x10; p >>= 1 {
					lg++
				}
				disp := tok>>(12-lg) + 1
				length := tok&(0xFFF>>lg) + 3
				if disp > pos {
					return fmt.Errorf("back-reference %d bytes before the chunk start", disp-pos)
				}
				for k := 0; k < length && out < end; k++ {
					dst[out] = dst[out-disp]
					out++
				}
			}
		}
		out = end
	}
	return nil
}

// ranges returns the data/hole map in file bytes, clipped to init.
func (s *dataStream) ranges() []parser.Range {
	var out []parser.Range
	add := func(off, n int64, sparse bool) {
		if off >= s.init {
			return
		}
		n = min(n, s.init-off)
		if k := len(out); k > 0 && out[k-1].IsSparse == sparse && out[k-1].Offset+out[k-1].Length == off {
			out[k-1].Length += n
			return
		}
		out = append(out, parser.Range{Offset: off, Length: n, IsSparse: sparse})
	}
	if s.unit == 0 {
		for _, r := range s.runs {
			add(r.vcn*s.cs, r.n*s.cs, r.lcn < 0)
		}
	} else {
		ub := s.unit * s.cs
		for u := int64(0); u*ub < s.init; u++ {
			allHole := true
			for i := s.find(u * s.unit); i >= 0 && i < len(s.runs) && s.runs[i].vcn < (u+1)*s.unit; i++ {
				if s.runs[i].lcn >= 0 {
					allHole = false
					break
				}
			}
			if allHole {
				// Skip the whole hole run at once.
				i := s.find(u * s.unit)
				if i >= 0 && s.runs[i].lcn < 0 {
					endU := (s.runs[i].vcn + s.runs[i].n) / s.unit
					if endU > u+1 {
						add(u*ub, (endU-u)*ub, true)
						u = endU - 1
						continue
					}
				}
			}
			add(u*ub, ub, allHole)
		}
	}
	if s.init < s.size {
		out = append(out, parser.Range{Offset: s.init, Length: s.size - s.init, IsSparse: true})
	}
	return out
}

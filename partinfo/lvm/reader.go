package lvm

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/md"
)

// ErrUnsupported marks LVs whose segment type cairn cannot read.
var ErrUnsupported = errors.New("LVM segment type not supported")

// ErrMissingPV marks LVs with extents on a PV that was not found.
var ErrMissingPV = errors.New("LVM physical volume missing")

// maxNesting bounds LV-on-LV references (raid images, mirror legs, thin
// pools): real layouts nest two or three deep.
const maxNesting = 8

// Volume reads the bytes of an LV as the device-mapper would map them.
type Volume struct {
	lv   *LV
	segs []segReader
	size int64
}

// segReader reads a segment's bytes; off is relative to the segment.
type segReader struct {
	start, size int64 // bytes within the LV
	read        func(p []byte, off int64) (int, error)
}

// Size is the LV's size in bytes.
func (v *Volume) Size() int64 { return v.size }

// LV returns the logical volume being read.
func (v *Volume) LV() *LV { return v.lv }

// ReadAt reads the LV's bytes; io.EOF at its end.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("LV %s/%s: negative offset %d", v.lv.vg.Name, v.lv.Name, off)
	}
	total := 0
	for len(p) > 0 {
		if off >= v.size {
			return total, io.EOF
		}
		s := v.seg(off)
		n := len(p)
		if rest := s.start + s.size - off; int64(n) > rest {
			n = int(rest)
		}
		m, err := s.read(p[:n], off-s.start)
		total += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return total, fmt.Errorf("LV %s/%s at %d: %w", v.lv.vg.Name, v.lv.Name, off, err)
		}
		p, off = p[n:], off+int64(n)
	}
	return total, nil
}

func (v *Volume) seg(off int64) *segReader {
	lo, hi := 0, len(v.segs)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if v.segs[mid].start <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return &v.segs[lo]
}

// Open returns a reader of the LV's bytes. LVs with a segment cairn
// cannot map (unknown type, a PV missing, no healthy mirror leg) give an
// error that says which and why.
func (lv *LV) Open() (*Volume, error) { return lv.open(0) }

func (lv *LV) open(depth int) (*Volume, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("LV %s/%s: LVs nested deeper than %d (a loop?): %w", lv.vg.Name, lv.Name, maxNesting, ErrCorrupt)
	}
	if len(lv.Segments) == 0 {
		return nil, fmt.Errorf("LV %s/%s has no segments: %w", lv.vg.Name, lv.Name, ErrCorrupt)
	}
	if lv.SnapshotOf != "" && depth == 0 {
		return nil, fmt.Errorf("LV %s/%s is an old-style (COW) snapshot of %s: cairn does not read COW exception stores; the origin's content at the time of the backup is in %s: %w", lv.vg.Name, lv.Name, lv.SnapshotOf, lv.SnapshotOf, ErrUnsupported)
	}
	v := &Volume{lv: lv, size: lv.Size()}
	es := lv.vg.ExtentSize
	for i := range lv.Segments {
		s := &lv.Segments[i]
		read, err := lv.segmentReader(s, depth)
		if err != nil {
			return nil, fmt.Errorf("LV %s/%s segment %d (%s): %w", lv.vg.Name, lv.Name, i+1, s.Type, err)
		}
		v.segs = append(v.segs, segReader{start: s.Start * es, size: s.Count * es, read: read})
	}
	return v, nil
}

func (lv *LV) segmentReader(s *Segment, depth int) (func([]byte, int64) (int, error), error) {
	es := lv.vg.ExtentSize
	switch s.Type {
	case "striped", "linear":
		var areas []io.ReaderAt
		var starts []int64
		for _, a := range s.Areas {
			if a.PV.Missing() {
				return nil, fmt.Errorf("its extents are on PV %s (UUID %s, last seen as %s), which is on none of the disks of this point: %w", a.PV.Name, a.PV.UUID, orUnknown(a.PV.DeviceHint), ErrMissingPV)
			}
			if a.Extent+s.Count/int64(len(s.Areas)) > a.PV.PECount {
				return nil, fmt.Errorf("extents %d+%d run past the %d extents of PV %s: %w", a.Extent, s.Count/int64(len(s.Areas)), a.PV.PECount, a.PV.Name, ErrCorrupt)
			}
			areas = append(areas, *a.PV.Device)
			starts = append(starts, a.PV.PEStart+a.Extent*es)
		}
		return stripe(areas, starts, s.StripeSize), nil
	case "raid0", "raid0_meta":
		var areas []io.ReaderAt
		var starts []int64
		for _, a := range s.Areas {
			if strings.Contains(a.LV, "_rmeta_") {
				continue
			}
			img, err := lv.sub(a.LV, depth)
			if err != nil {
				return nil, err
			}
			areas = append(areas, img)
		}
		if len(areas) == 0 || s.StripeSize == 0 {
			return nil, fmt.Errorf("raid0 segment without images or stripe_size: %w", ErrCorrupt)
		}
		// Each image holds 1/n of the LV; this segment starts 1/n of
		// the way in.
		for range areas {
			starts = append(starts, s.Start*es/int64(len(areas)))
		}
		return stripe(areas, starts, s.StripeSize), nil
	case "raid1", "mirror":
		var errs []string
		for _, a := range s.Areas {
			if strings.Contains(a.LV, "_rmeta_") {
				continue
			}
			leg, err := lv.sub(a.LV, depth)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			// A raid1 image mirrors the LV extent for extent; a mirror
			// leg names the extent where the segment starts in it.
			base := s.Start * es
			if s.Type == "mirror" {
				base = a.Extent * es
			}
			return func(p []byte, off int64) (int, error) { return leg.ReadAt(p, base+off) }, nil
		}
		return nil, fmt.Errorf("no healthy leg: %s: %w", strings.Join(errs, "; "), ErrMissingPV)
	case "raid4", "raid5", "raid5_ls", "raid5_la", "raid5_rs", "raid5_ra", "raid5_n", "raid6", "raid6_zr", "raid6_nr", "raid6_nc", "raid10":
		return lv.raidReader(s, depth)
	case "zero":
		return func(p []byte, off int64) (int, error) { clear(p); return len(p), nil }, nil
	case "error":
		return nil, fmt.Errorf("an error segment (its data was removed): %w", ErrUnsupported)
	case "thin":
		return lv.thinReader(s, depth)
	case "thin-pool":
		return nil, fmt.Errorf("a thin pool holds the blocks of its thin volumes, not a filesystem: its thin volumes are listed beside it: %w", ErrUnsupported)
	case "snapshot":
		return nil, fmt.Errorf("an old-style (COW) snapshot: cairn shows its origin, not the snapshot: %w", ErrUnsupported)
	}
	return nil, fmt.Errorf("segment type %q: %w", s.Type, ErrUnsupported)
}

// sub opens a hidden LV a segment refers to (raid image, mirror leg).
func (lv *LV) sub(name string, depth int) (*Volume, error) {
	o := lv.vg.LV(name)
	if o == nil {
		return nil, fmt.Errorf("it refers to LV %q, which the metadata does not define: %w", name, ErrCorrupt)
	}
	return o.open(depth + 1)
}

// stripe maps a segment's bytes over areas: area i starts at starts[i];
// chunks of size bytes go round the areas in turn (one area: linear).
func stripe(areas []io.ReaderAt, starts []int64, size int64) func([]byte, int64) (int, error) {
	n := int64(len(areas))
	if n == 1 {
		return func(p []byte, off int64) (int, error) { return readExact(areas[0], p, starts[0]+off) }
	}
	return func(p []byte, off int64) (int, error) {
		total := 0
		for len(p) > 0 {
			chunk := off / size
			in := off % size
			a := chunk % n
			row := chunk / n
			m := len(p)
			if rest := size - in; int64(m) > rest {
				m = int(rest)
			}
			k, err := readExact(areas[a], p[:m], starts[a]+row*size+in)
			total += k
			if err != nil {
				return total, err
			}
			p, off = p[m:], off+int64(m)
		}
		return total, nil
	}
}

func readExact(r io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// The md level and layout dm-raid runs each lvm2 raid segment type as
// (dm-raid's raid_types table): raid4 is md raid5 with parity on the
// first image (ALGORITHM_PARITY_0, not md raid4's last), raid5 is
// raid5_ls, raid6 is raid6_zr, and raid6_zr/nr/nc are md's DDF layouts
// 8/9/10 (rotating zero restart, N restart, N continue); LVM's raid10 is
// MD raid10 with two near copies.
var raidLayouts = map[string]struct{ level, layout int }{
	"raid4": {md.Level5, 4},
	"raid5": {md.Level5, 2}, "raid5_ls": {md.Level5, 2}, "raid5_la": {md.Level5, 0},
	"raid5_rs": {md.Level5, 3}, "raid5_ra": {md.Level5, 1}, "raid5_n": {md.Level5, 5},
	"raid6": {md.Level6, 8}, "raid6_zr": {md.Level6, 8}, "raid6_nr": {md.Level6, 9}, "raid6_nc": {md.Level6, 10},
	"raid10": {md.Level10, 0x102},
}

// raidReader reads raid4/5/6 and raid10 LVs through the MD layouts: each
// image LV is a member (its data from offset 0); an image on a missing
// PV is a missing member.
func (lv *LV) raidReader(s *Segment, depth int) (func([]byte, int64) (int, error), error) {
	l := raidLayouts[s.Type]
	if s.StripeSize <= 0 {
		return nil, fmt.Errorf("%s segment without stripe_size: %w", s.Type, ErrCorrupt)
	}
	a := &md.Array{Name: lv.vg.Name + "/" + lv.Name, UUID: lv.UUID, Level: l.level, Layout: l.layout, Chunk: s.StripeSize}
	var missing []string
	for _, ar := range s.Areas {
		if strings.Contains(ar.LV, "_rmeta_") {
			continue
		}
		img, err := lv.sub(ar.LV, depth)
		if err != nil {
			a.Members = append(a.Members, nil)
			missing = append(missing, err.Error())
			continue
		}
		a.Members = append(a.Members, &md.Member{Device: partinfo.Region{Name: ar.LV, R: img, Size: img.Size()},
			DataSize: img.Size(), Role: len(a.Members)})
	}
	a.RaidDisks = len(a.Members)
	vol, err := a.Open()
	if err != nil {
		if len(missing) > 0 {
			err = fmt.Errorf("%w (%s)", err, strings.Join(missing, "; "))
		}
		return nil, err
	}
	base := s.Start * lv.vg.ExtentSize
	if base+s.Count*lv.vg.ExtentSize > vol.Size() {
		return nil, fmt.Errorf("%s segment of %d extents at %d: its images hold %d bytes: %w", s.Type, s.Count, s.Start, vol.Size(), ErrCorrupt)
	}
	return func(p []byte, off int64) (int, error) { return readExact(vol, p, base+off) }, nil
}

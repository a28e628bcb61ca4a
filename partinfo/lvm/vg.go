package lvm

import (
	"fmt"
	"sort"
	"strings"
)

// VG is a volume group assembled from the physical volumes found.
type VG struct {
	Name  string
	UUID  string
	Seqno int64
	// ExtentSize is the size of one physical extent in bytes.
	ExtentSize int64
	PVs        []*PV
	// LVs holds every logical volume, hidden ones (raid images, thin
	// pool data and metadata) included; Visible marks the user's.
	LVs []*LV
	// Problems lists what is wrong or missing (absent PVs, PVs with
	// older or damaged metadata); the VG is still shown.
	Problems []string
	// MetadataFrom says which copy of the metadata was used.
	MetadataFrom string

	byName map[string]*LV
}

// PV is a physical volume as the VG metadata names it.
type PV struct {
	Name       string // "pv0"
	UUID       string // with dashes, as LVM prints it
	DeviceHint string // the device path LVM last saw it on
	PEStart    int64  // bytes from the start of the device to extent 0
	PECount    int64
	// Device is where cairn found it; nil when it is on none of the
	// point's disks.
	Device *Device
}

// Missing reports whether the PV was not found.
func (p *PV) Missing() bool { return p.Device == nil }

// LV is a logical volume.
type LV struct {
	Name     string
	UUID     string
	Visible  bool
	Status   []string
	Extents  int64
	Segments []Segment
	// SnapshotOf names the origin when this LV is the COW store of an
	// old-style snapshot (its bytes are an exception store, not the
	// snapshot's content).
	SnapshotOf string
	vg         *VG
}

// VG returns the volume group of the LV.
func (lv *LV) VG() *VG { return lv.vg }

// Size is the LV's size in bytes.
func (lv *LV) Size() int64 { return lv.Extents * lv.vg.ExtentSize }

// Type is the segment type of the LV's first segment ("striped" for a
// linear LV, "raid1", "thin", ...).
func (lv *LV) Type() string {
	if len(lv.Segments) == 0 {
		return ""
	}
	t := lv.Segments[0].Type
	if t == "striped" && len(lv.Segments[0].Areas) == 1 {
		return "linear"
	}
	return t
}

// Segment is one run of logical extents with one mapping.
type Segment struct {
	Start, Count int64 // logical extents
	Type         string
	StripeSize   int64 // bytes, for striped and raid0
	Areas        []AreaRef
	sec          *Section
}

// AreaRef is one area of a segment: extents of a PV or of another LV.
type AreaRef struct {
	PV     *PV    // set for PV areas
	LV     string // set for LV areas (raid images, mirror legs)
	Extent int64  // first extent within the PV or LV
}

// parseVG builds a VG (without devices) from a parsed metadata text.
func parseVG(root *Section) (*VG, error) {
	var sec *Section
	for _, s := range root.Sections {
		if _, ok := s.Int("seqno"); ok && s.Section("physical_volumes") != nil {
			sec = s
			break
		}
	}
	if sec == nil {
		return nil, fmt.Errorf("no volume group section in the metadata: %w", ErrCorrupt)
	}
	vg := &VG{Name: sec.Name, byName: map[string]*LV{}}
	vg.UUID, _ = sec.Str("id")
	vg.Seqno, _ = sec.Int("seqno")
	es, ok := sec.Int("extent_size")
	if !ok || es <= 0 || es > 1<<32 {
		return nil, fmt.Errorf("VG %s: extent_size %d: %w", vg.Name, es, ErrCorrupt)
	}
	vg.ExtentSize = es * sector
	pvByName := map[string]*PV{}
	for _, ps := range sec.Section("physical_volumes").children() {
		pv := &PV{Name: ps.Name}
		pv.UUID, _ = ps.Str("id")
		pv.DeviceHint, _ = ps.Str("device")
		start, _ := ps.Int("pe_start")
		pv.PECount, _ = ps.Int("pe_count")
		if start < 0 || start > 1<<40 || pv.PECount < 0 || pv.PECount > 1<<40 || pv.UUID == "" {
			return nil, fmt.Errorf("VG %s: PV %s: bad pe_start, pe_count or id: %w", vg.Name, pv.Name, ErrCorrupt)
		}
		pv.PEStart = start * sector
		vg.PVs = append(vg.PVs, pv)
		pvByName[pv.Name] = pv
	}
	for _, ls := range sec.Section("logical_volumes").children() {
		lv := &LV{Name: ls.Name, vg: vg}
		lv.UUID, _ = ls.Str("id")
		lv.Status = ls.Strings("status")
		lv.Visible = ls.Has("status", "VISIBLE")
		for _, ss := range ls.Sections {
			if !strings.HasPrefix(ss.Name, "segment") {
				continue
			}
			seg, err := parseSegment(vg, lv, ss, pvByName)
			if err != nil {
				return nil, err
			}
			lv.Segments = append(lv.Segments, seg)
		}
		sort.Slice(lv.Segments, func(i, j int) bool { return lv.Segments[i].Start < lv.Segments[j].Start })
		for _, s := range lv.Segments {
			if s.Start != lv.Extents {
				return nil, fmt.Errorf("VG %s: LV %s: segment at extent %d leaves a gap or overlap at %d: %w", vg.Name, lv.Name, s.Start, lv.Extents, ErrCorrupt)
			}
			lv.Extents += s.Count
		}
		if lv.Extents > 1<<40 {
			return nil, fmt.Errorf("VG %s: LV %s: %d extents: %w", vg.Name, lv.Name, lv.Extents, ErrCorrupt)
		}
		if vg.byName[lv.Name] != nil {
			return nil, fmt.Errorf("VG %s: two LVs named %s: %w", vg.Name, lv.Name, ErrCorrupt)
		}
		vg.byName[lv.Name] = lv
		vg.LVs = append(vg.LVs, lv)
	}
	for _, lv := range vg.LVs {
		for _, s := range lv.Segments {
			if s.Type != "snapshot" {
				continue
			}
			origin, _ := s.sec.Str("origin")
			cow, _ := s.sec.Str("cow_store")
			if c := vg.byName[cow]; c != nil && origin != "" {
				c.SnapshotOf = origin
			}
		}
	}
	return vg, nil
}

func parseSegment(vg *VG, lv *LV, ss *Section, pvs map[string]*PV) (Segment, error) {
	bad := func(what string) (Segment, error) {
		return Segment{}, fmt.Errorf("VG %s: LV %s: %s: %s: %w", vg.Name, lv.Name, ss.Name, what, ErrCorrupt)
	}
	seg := Segment{sec: ss}
	seg.Start, _ = ss.Int("start_extent")
	seg.Count, _ = ss.Int("extent_count")
	seg.Type, _ = ss.Str("type")
	if seg.Start < 0 || seg.Count <= 0 || seg.Start > 1<<40 || seg.Count > 1<<40 {
		return bad("bad start_extent or extent_count")
	}
	if sz, ok := ss.Int("stripe_size"); ok {
		if sz <= 0 || sz > 1<<30 {
			return bad("bad stripe_size")
		}
		seg.StripeSize = sz * sector
	}
	var list []Value
	step := 2 // name, extent pairs
	switch seg.Type {
	case "striped", "linear":
		list = ss.List("stripes")
	case "mirror":
		list = ss.List("mirrors")
	case "raid1", "raid0", "raid0_meta", "raid10", "raid4", "raid5", "raid5_ls", "raid5_la", "raid5_rs", "raid5_ra", "raid5_n", "raid6", "raid6_zr", "raid6_nr", "raid6_nc":
		list = ss.List("raids")
		step = 1
	}
	for i := 0; i < len(list); i += step {
		if list[i].Kind != KindString {
			return bad("area name is not a string")
		}
		ref := AreaRef{}
		if step == 2 {
			if i+1 >= len(list) || list[i+1].Kind != KindInt || list[i+1].Int < 0 || list[i+1].Int > 1<<40 {
				return bad("area without a valid start extent")
			}
			ref.Extent = list[i+1].Int
		}
		if pv, ok := pvs[list[i].Str]; ok && seg.Type != "mirror" && step == 2 {
			ref.PV = pv
		} else {
			ref.LV = list[i].Str
		}
		seg.Areas = append(seg.Areas, ref)
	}
	if (seg.Type == "striped" || seg.Type == "linear") && (len(seg.Areas) == 0 || seg.Count%int64(len(seg.Areas)) != 0) {
		return bad(fmt.Sprintf("%d extents over %d stripes", seg.Count, len(seg.Areas)))
	}
	if seg.Type == "striped" && len(seg.Areas) > 1 && seg.StripeSize == 0 {
		return bad("striped segment without stripe_size")
	}
	for _, a := range seg.Areas {
		if a.PV == nil && step == 2 && seg.Type != "mirror" {
			return bad(fmt.Sprintf("stripe on unknown PV %q", a.LV))
		}
	}
	return seg, nil
}

// Extents returns the VG's physical extents in all and those allocated
// to LVs (what vgs prints as #PE and Alloc PE).
func (vg *VG) Extents() (total, allocated int64) {
	for _, pv := range vg.PVs {
		total += pv.PECount
	}
	for _, lv := range vg.LVs {
		for _, s := range lv.Segments {
			for _, a := range s.Areas {
				if a.PV != nil {
					allocated += s.Count / int64(len(s.Areas))
				}
			}
		}
	}
	return total, allocated
}

// LV returns the logical volume called name, or nil.
func (vg *VG) LV(name string) *LV { return vg.byName[name] }

// MissingPVs lists the PVs of the VG not found on any device.
func (vg *VG) MissingPVs() []*PV {
	var out []*PV
	for _, p := range vg.PVs {
		if p.Missing() {
			out = append(out, p)
		}
	}
	return out
}

// VisibleLVs returns the LVs a user sees (lvs without -a).
func (vg *VG) VisibleLVs() []*LV {
	var out []*LV
	for _, lv := range vg.LVs {
		if lv.Visible {
			out = append(out, lv)
		}
	}
	return out
}

func stripDashes(s string) string { return strings.ReplaceAll(s, "-", "") }

package lvm

import (
	"context"
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/partinfo"
)

// Set is what a scan of a point's devices found: the volume groups and
// the problems that kept anything from being assembled.
type Set struct {
	VGs []*VG
	// PVs lists every device with an LVM label, by device name.
	PVs []FoundPV
	// Problems are findings not tied to one VG (damaged labels, PVs
	// whose VG has no readable metadata anywhere).
	Problems []string
}

// FoundPV is a device that carries an LVM label.
type FoundPV struct {
	Device Device
	UUID   string // with dashes
	VG     string // name of the VG it belongs to; "" when unknown
}

// VG returns the volume group called name, or nil.
func (s *Set) VG(name string) *VG {
	for _, vg := range s.VGs {
		if vg.Name == name {
			return vg
		}
	}
	return nil
}

type candidate struct {
	vg   *VG
	text []byte
	from string
	dev  int
}

// Scan looks for LVM physical volumes on the devices (whole disks and
// partitions of one recovery point), reads the newest valid metadata copy
// of every volume group and assembles the groups. It never fails as a
// whole: damage is reported in Problems (of the Set or of a VG). Only a
// cancelled context ends it early.
func Scan(ctx context.Context, devs []Device) (*Set, error) {
	set := &Set{}
	labels := make([]*Label, len(devs))
	var cands []candidate
	for i, dev := range devs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, cs, problems := scanDevice(dev)
		set.Problems = append(set.Problems, problems...)
		labels[i] = l
		for _, c := range cs {
			c.dev = i
			cands = append(cands, c)
		}
	}
	// The newest copy of each VG (by UUID) wins; older copies are noted.
	newest := map[string]candidate{}
	var order []string
	for _, c := range cands {
		key := c.vg.UUID
		cur, ok := newest[key]
		if !ok {
			order = append(order, key)
		}
		if !ok || c.vg.Seqno > cur.vg.Seqno {
			newest[key] = c
		}
	}
	for _, key := range order {
		best := newest[key]
		vg := best.vg
		vg.MetadataFrom = fmt.Sprintf("%s (seqno %d)", best.from, vg.Seqno)
		for _, c := range cands {
			if c.vg.UUID == key && c.vg.Seqno < vg.Seqno {
				vg.Problems = append(vg.Problems, fmt.Sprintf("%s holds older metadata (seqno %d, newest %d): the newest copy is used", c.from, c.vg.Seqno, vg.Seqno))
			}
		}
		set.VGs = append(set.VGs, vg)
	}
	// Attach devices to the PVs of the VGs by PV UUID.
	byUUID := map[string]*PV{}
	pvVG := map[string]*VG{}
	for _, vg := range set.VGs {
		for _, pv := range vg.PVs {
			byUUID[stripDashes(pv.UUID)] = pv
			pvVG[stripDashes(pv.UUID)] = vg
		}
	}
	for i, l := range labels {
		if l == nil {
			continue
		}
		found := FoundPV{Device: devs[i], UUID: partinfo.FormatLVMUUID(l.UUID)}
		pv := byUUID[l.UUID]
		switch {
		case pv == nil:
			set.Problems = append(set.Problems, fmt.Sprintf("%s: LVM physical volume %s belongs to no volume group with readable metadata", devs[i].Name, found.UUID))
		case pv.Device != nil:
			pvVG[l.UUID].Problems = append(pvVG[l.UUID].Problems, fmt.Sprintf("PV %s is on both %s and %s (a RAID member or a cloned disk?): %s is used", found.UUID, pv.Device.Name, devs[i].Name, pv.Device.Name))
			found.VG = pvVG[l.UUID].Name
		default:
			d := devs[i]
			pv.Device = &d
			found.VG = pvVG[l.UUID].Name
			if need := pv.PEStart + pv.PECount*pvVG[l.UUID].ExtentSize; need > d.Size {
				pvVG[l.UUID].Problems = append(pvVG[l.UUID].Problems, fmt.Sprintf("PV %s on %s is %d bytes, its extents need %d: the device was shrunk or cut", pv.Name, d.Name, d.Size, need))
			}
		}
		set.PVs = append(set.PVs, found)
	}
	for _, vg := range set.VGs {
		for _, pv := range vg.MissingPVs() {
			vg.Problems = append(vg.Problems, fmt.Sprintf("PV %s (UUID %s, last seen as %s) is on none of the disks of this point: logical volumes with extents on it cannot be read", pv.Name, pv.UUID, orUnknown(pv.DeviceHint)))
		}
	}
	sort.SliceStable(set.VGs, func(i, j int) bool { return set.VGs[i].Name < set.VGs[j].Name })
	// Two VGs of one name (disks of two machines, or a cloned disk):
	// both are shown, the second and later named <name>-<uuid prefix>.
	seen := map[string]bool{}
	for _, vg := range set.VGs {
		if seen[vg.Name] {
			vg.Problems = append(vg.Problems, fmt.Sprintf("another volume group on these disks is also called %s: this one (UUID %s) is shown as %s-%s", vg.Name, vg.UUID, vg.Name, shortID(vg.UUID)))
			vg.Name = vg.Name + "-" + shortID(vg.UUID)
		}
		seen[vg.Name] = true
	}
	return set, nil
}

// scanDevice reads one device's label and metadata copies; a parser
// panic becomes a problem, never a crash.
func scanDevice(dev Device) (l *Label, cands []candidate, problems []string) {
	defer func() {
		if p := recover(); p != nil {
			l, cands = nil, nil
			problems = append(problems, fmt.Sprintf("%s: LVM reader failed on this device (%v): %v", dev.Name, p, ErrCorrupt))
		}
	}()
	l, err := ReadLabel(dev)
	if err != nil {
		return nil, nil, []string{err.Error()}
	}
	if l == nil {
		return nil, nil, nil
	}
	copies, errs := readMetadata(dev, l)
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	for _, c := range copies {
		root, err := ParseConfig(c.text)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c.where, err))
			continue
		}
		vg, err := parseVG(root)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c.where, err))
			continue
		}
		cands = append(cands, candidate{vg: vg, text: c.text, from: c.where})
	}
	return l, cands, problems
}

func shortID(uuid string) string {
	id := stripDashes(uuid)
	if len(id) > 6 {
		id = id[:6]
	}
	return id
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown device"
	}
	return s
}

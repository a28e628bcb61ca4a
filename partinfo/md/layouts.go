package md

import (
	"fmt"
	"sort"
)

// Layouts of raid0 over members of different sizes and of raid10 with
// far and offset copies, as drivers/md/raid0.c (create_strip_zones,
// map_sector) and raid10.c (setup_geo, calc_sectors, __raid10_find_phys)
// place them.

// raid0 layouts (the superblock's layout field, md_p.h): which sector the
// member of a chunk in a later zone is chosen by.
const (
	raid0Unset    = 0 // single-zone arrays need none
	raid0Original = 1 // RAID0_ORIG_LAYOUT: the array sector (kernels before 3.14)
	raid0Alt      = 2 // RAID0_ALT_MULTIZONE_LAYOUT: the sector within the zone
)

// zone is one strip zone of a raid0: the array bytes [start, start+size)
// striped over slots at member offset devStart.
type zone struct {
	start, size, devStart int64
	slots                 []int
}

// raid0Zones splits a raid0 into zones: every member's data area rounded
// down to the chunk; zone k stripes over the members larger than the
// k-th smallest size, from that size on.
func (a *Array) raid0Zones() ([]zone, int64, error) {
	if a.Chunk <= 0 {
		return nil, 0, fmt.Errorf("md %s: raid0 without a chunk size: %w", a.Name, ErrCorrupt)
	}
	sizes := make([]int64, len(a.Members))
	var distinct []int64
	for r, m := range a.Members {
		sizes[r] = m.DataSize - m.DataSize%a.Chunk
		if sizes[r] <= 0 {
			return nil, 0, fmt.Errorf("md %s: raid0 member %s smaller than a chunk: %w", a.Name, m.Device.Name, ErrCorrupt)
		}
		distinct = append(distinct, sizes[r])
	}
	sort.Slice(distinct, func(i, j int) bool { return distinct[i] < distinct[j] })
	var zones []zone
	var start, devStart int64
	for _, end := range distinct {
		if end <= devStart {
			continue
		}
		z := zone{start: start, devStart: devStart}
		for r, s := range sizes {
			if s > devStart {
				z.slots = append(z.slots, r)
			}
		}
		z.size = (end - devStart) * int64(len(z.slots))
		zones = append(zones, z)
		start += z.size
		devStart = end
	}
	if len(zones) > 1 && a.Layout != raid0Original && a.Layout != raid0Alt {
		return nil, 0, fmt.Errorf("md %s: raid0 over members of different sizes with layout %d (neither original nor alternate; "+
			"the kernel refuses it too until mdadm --update=layout-original or layout-alternate): %w", a.Name, a.Layout, ErrUnsupported)
	}
	return zones, start, nil
}

// readZones reads a raid0 by zones (map_sector).
func (a *Array) readZones(zones []zone) func([]byte, int64) error {
	return func(p []byte, off int64) error {
		zi := 0
		for len(p) > 0 {
			for zi < len(zones)-1 && off >= zones[zi].start+zones[zi].size {
				zi++
			}
			z := zones[zi]
			for zi > 0 && off < z.start {
				zi--
				z = zones[zi]
			}
			inZone := off - z.start
			in := inZone % a.Chunk
			k := min(int64(len(p)), a.Chunk-in)
			nb := int64(len(z.slots))
			row := inZone / (a.Chunk * nb)
			pick := off // RAID0_ORIG_LAYOUT
			if a.Layout == raid0Alt {
				pick = inZone
			}
			r := z.slots[(pick/a.Chunk)%nb]
			if err := a.member(r, p[:k], z.devStart+row*a.Chunk+in); err != nil {
				return err
			}
			p, off = p[k:], off+k
		}
		return nil
	}
}

// raid10 is the geometry of a raid10 (layout: near copies in bits 0-7,
// far copies in 8-15, bit 16 offset instead of far, bits 17-18 far sets).
type raid10 struct {
	a                *Array
	near, far, disks int64
	offset           bool
	stride           int64 // member bytes between far copies
	size             int64
	// farSet is how many members a far copy rotates within (setup_geo's
	// far_set_size): all of them in the original layout (bits 17-18 = 0),
	// disks/far in the first "improved" layout (1), near*far in the fixed
	// one (2). The last set takes the disks%farSet members left over.
	farSet, lastSetStart, lastSetSize int64
}

// raid10Geometry checks a raid10's layout and sizes it from the per-member
// bytes the array uses (the superblock's size), as calc_sectors does.
func (a *Array) raid10Geometry(per int64) (*raid10, error) {
	g := &raid10{a: a, near: int64(a.Layout & 0xff), far: int64(a.Layout >> 8 & 0xff), offset: a.Layout>>16&1 == 1,
		disks: int64(a.RaidDisks)}
	if g.near < 1 || g.far < 1 || g.near*g.far > g.disks {
		return nil, fmt.Errorf("md %s: raid10 layout %#x over %d members: %w", a.Name, a.Layout, g.disks, ErrCorrupt)
	}
	switch a.Layout >> 17 {
	case 0:
		g.farSet = g.disks
	case 1:
		g.farSet = g.disks / g.far
	case 2:
		g.farSet = g.far * g.near
	default:
		return nil, fmt.Errorf("md %s: raid10 layout %#x: far-set kind %d is none the kernel knows (0, 1 or 2): %w", a.Name, a.Layout, a.Layout>>17, ErrCorrupt)
	}
	g.lastSetStart = (g.disks/g.farSet - 1) * g.farSet
	g.lastSetSize = g.farSet + g.disks%g.farSet
	if a.Chunk <= 0 {
		return nil, fmt.Errorf("md %s: raid10 without a chunk size: %w", a.Name, ErrCorrupt)
	}
	chunks := per / a.Chunk / g.far * g.disks / g.near // the array's chunks
	g.size = chunks * a.Chunk
	devChunks := (chunks*g.near*g.far + g.disks - 1) / g.disks
	g.stride = devChunks / g.far * a.Chunk
	if g.offset {
		g.stride = a.Chunk
	}
	if g.size <= 0 {
		return nil, fmt.Errorf("md %s: raid10 members too small for one stripe: %w", a.Name, ErrCorrupt)
	}
	return g, nil
}

// copies returns the (slot, member offset) of every copy of the chunk
// at array chunk c, byte in within it (__raid10_find_phys): near copies
// on consecutive members, each far copy one stride further down and near
// members on, wrapping within its far set.
func (g *raid10) copies(c, in int64) [][2]int64 {
	chunk := c * g.near
	dev, stripe := chunk%g.disks, chunk/g.disks
	if g.offset {
		stripe *= g.far
	}
	sector := stripe*g.a.Chunk + in
	var out [][2]int64
	for n := int64(0); n < g.near; n++ {
		d, s := dev, sector
		out = append(out, [2]int64{d, s})
		for f := int64(1); f < g.far; f++ {
			set := d / g.farSet
			d += g.near
			if g.disks%g.farSet != 0 && d > g.lastSetStart {
				d = (d-g.lastSetStart)%g.lastSetSize + g.lastSetStart
			} else {
				d = d%g.farSet + g.farSet*set
			}
			s += g.stride
			out = append(out, [2]int64{d, s})
		}
		if dev++; dev >= g.disks {
			dev, sector = 0, sector+g.a.Chunk
		}
	}
	return out
}

// complete fails with ErrMissing when the missing members hold every
// copy of some chunks (both members of a near-2 pair, say), as the
// kernel refuses to start such an array. Which members hold a chunk's
// copies depends only on the member of its first copy, (c*near) mod
// disks, so the first disks chunks show every case.
func (g *raid10) complete() error {
	missing := g.a.Missing()
	if missing == 0 {
		return nil
	}
	for c := int64(0); c < g.disks && c*g.a.Chunk < g.size; c++ {
		found := false
		for _, cp := range g.copies(c, 0) {
			found = found || g.a.Members[cp[0]] != nil
		}
		if !found {
			return fmt.Errorf("md %s (raid10): %d of %d members missing, among them every copy of chunk %d: %w", g.a.Name, missing, g.disks, c, ErrMissing)
		}
	}
	return nil
}

// read reads chunk by chunk from the first copy whose member is present
// and reads.
func (g *raid10) read(p []byte, off int64) error {
	ch := g.a.Chunk
	for len(p) > 0 {
		c, in := off/ch, off%ch
		k := min(int64(len(p)), ch-in)
		var err error = ErrMissing
		for _, cp := range g.copies(c, in) {
			if g.a.Members[cp[0]] == nil {
				continue
			}
			if err = g.a.member(int(cp[0]), p[:k], cp[1]); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("chunk %d: no readable copy: %w", c, err)
		}
		p, off = p[k:], off+k
	}
	return nil
}

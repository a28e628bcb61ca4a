package volumes

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/btrfs"
	"github.com/cairnbackup/cairn/partinfo/ldm"
	"github.com/cairnbackup/cairn/partinfo/lvm"
	"github.com/cairnbackup/cairn/partinfo/md"
)

// Path names of volumes that span disks (see the package documentation).
const (
	// LVMDir holds LVM volume groups: lvm/<vg>/<lv>.
	LVMDir = "lvm"
	// MDDir holds MD arrays: md/<array>.
	MDDir = "md"
	// LDMDir holds Windows dynamic volumes: ldm/<volume>.
	LDMDir = "ldm"
	// BtrfsDir holds btrfs filesystems of several devices:
	// btrfs/<label or UUID>.
	BtrfsDir = "btrfs"
)

// LVPath is the path of an LV: lvm/<vg>/<lv>.
func LVPath(lv *lvm.LV) string { return LVMDir + "/" + lv.VG().Name + "/" + lv.Name }

// Volume is one browsable (or not) area of a disk: a partition or the whole disk.
type Volume struct {
	Name      string // p1, p2, ... or whole
	Partition *partinfo.Partition
	Offset    int64
	Size      int64
	Detection partinfo.Detection
}

// OfDisk lists the volumes of a disk: its partitions (not extended
// containers), or the whole disk when it has no partition table.
func OfDisk(r io.ReaderAt, size int64) ([]Volume, *partinfo.Table, error) {
	t, err := partinfo.ReadTable(r, size)
	if err != nil {
		return nil, nil, fmt.Errorf("read partition table: %w", err)
	}
	var vols []Volume
	if t.Type == partinfo.TableNone {
		vols = append(vols, Volume{Name: "whole", Offset: 0, Size: size, Detection: partinfo.Detect(r, 0, size)})
		return vols, t, nil
	}
	for i := range t.Partitions {
		p := t.Partitions[i]
		if p.Extended {
			continue
		}
		vols = append(vols, Volume{Name: fmt.Sprintf("p%d", p.Number), Partition: &p, Offset: p.Start, Size: p.Size, Detection: partinfo.DetectPartition(r, p)})
	}
	return vols, t, nil
}

// Disk is one disk of a point, for assembling volumes across disks.
type Disk struct {
	Name string
	R    io.ReaderAt
	Size int64
}

// Stack is what lies across the disks of a point: MD arrays, LVM volume
// groups (on partitions, whole disks or arrays), dynamic volumes and
// btrfs filesystems of several devices (on partitions, whole disks,
// arrays or LVs).
type Stack struct {
	MD  *md.Set
	LVM *lvm.Set
	// Arrays maps an array's name to its reader (arrays that cannot be
	// read are absent; ArrayErrors says why).
	Arrays      map[string]*md.Volume
	ArrayErrors map[string]error
	// LDM holds the Windows dynamic volumes (MBR dynamic disks).
	LDM *ldm.Set
	// Btrfs holds the btrfs filesystems of several devices; a device
	// on an array or an LV is named by its volume path (md/<array>,
	// lvm/<vg>/<lv>).
	Btrfs []*btrfs.Group
}

// Scan finds MD members and LVM physical volumes on every partition
// (or whole disk, without a partition table) of the disks, assembles the
// arrays, then the volume groups on partitions, disks and arrays, then
// the btrfs filesystems of several devices on all of these and the LVs. Disks
// whose partition table cannot be read are skipped and named in the LVM
// set's Problems.
func Scan(ctx context.Context, disks []Disk) (*Stack, error) {
	type cand struct {
		dev partinfo.Region
		typ string
	}
	var cands []cand
	var regions []partinfo.Region
	var problems []string
	for _, d := range disks {
		vols, _, err := OfDisk(d.R, d.Size)
		if err != nil {
			problems = append(problems, fmt.Sprintf("disk %s: %v", d.Name, err))
			continue
		}
		for _, v := range vols {
			name := d.Name + "/" + v.Name
			r := partinfo.Region{Name: name, R: d.R, Off: v.Offset, Size: v.Size}
			cands = append(cands, cand{r, v.Detection.Type})
			regions = append(regions, r)
		}
	}
	st := &Stack{Arrays: map[string]*md.Volume{}, ArrayErrors: map[string]error{}}
	var wholes []partinfo.Region
	for _, d := range disks {
		wholes = append(wholes, partinfo.Region{Name: d.Name, R: d.R, Size: d.Size})
	}
	var err error
	if st.LDM, err = ldm.Scan(ctx, wholes); err != nil {
		return nil, err
	}
	if st.MD, err = md.Scan(ctx, regions); err != nil {
		return nil, err
	}
	var devs []lvm.Device
	for _, c := range cands {
		if c.typ == "lvm2" && !st.MD.IsMember(c.dev.Name) {
			devs = append(devs, c.dev)
		}
	}
	for _, a := range st.MD.Arrays {
		vol, err := a.Open()
		if err != nil {
			st.ArrayErrors[a.Name] = err
			continue
		}
		st.Arrays[a.Name] = vol
		if partinfo.Detect(vol, 0, vol.Size()).Type == "lvm2" {
			devs = append(devs, partinfo.Region{Name: MDDir + "/" + a.Name, R: vol, Size: vol.Size()})
		}
	}
	if st.LVM, err = lvm.Scan(ctx, devs); err != nil {
		return nil, err
	}
	st.LVM.Problems = append(problems, st.LVM.Problems...)
	st.Btrfs = btrfs.Scan(st.btrfsRegions(regions))
	return st, nil
}

// InArray is the set of partitions and whole disks (by region name:
// disk/part or disk) that are members of an MD array that could be
// assembled. A raid1 member with its data at offset 0 shows the array's
// filesystem too: the array (md/<array>) is the volume to read.
func (st *Stack) InArray() map[string]bool {
	in := map[string]bool{}
	for _, a := range st.MD.Arrays {
		if st.Arrays[a.Name] == nil {
			continue
		}
		for _, m := range a.Members {
			if m != nil {
				in[m.Device.Name] = true
			}
		}
	}
	return in
}

// btrfsRegions is where a device of a btrfs of several devices may be:
// the partitions and whole disks that are not members of an array that
// could be assembled (a raid1 member with its data at offset 0 shows the
// array's superblock too: the array is the device), then the arrays,
// then the visible LVs, named by their volume paths (md/<array>,
// lvm/<vg>/<lv>).
func (st *Stack) btrfsRegions(parts []partinfo.Region) []partinfo.Region {
	inArray := st.InArray()
	var rs []partinfo.Region
	for _, r := range parts {
		if !inArray[r.Name] {
			rs = append(rs, r)
		}
	}
	for _, a := range st.MD.Arrays {
		if vol := st.Arrays[a.Name]; vol != nil {
			rs = append(rs, partinfo.Region{Name: MDDir + "/" + a.Name, R: vol, Size: vol.Size()})
		}
	}
	for _, vg := range st.LVM.VGs {
		for _, lv := range vg.VisibleLVs() {
			if vol, err := lv.Open(); err == nil {
				rs = append(rs, partinfo.Region{Name: LVPath(lv), R: vol, Size: vol.Size()})
			}
		}
	}
	return rs
}

// BtrfsName is a multi-device btrfs's name under fs/btrfs/: its label
// when that is a usable, unique name, else its UUID.
func BtrfsName(g *btrfs.Group, all []*btrfs.Group) string {
	l := g.Label
	if l == "" || l == "." || l == ".." || strings.ContainsAny(l, "/\x00") {
		return g.FSID
	}
	for _, o := range all {
		if o != g && o.Label == l {
			return g.FSID
		}
	}
	return l
}

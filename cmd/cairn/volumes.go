package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/lvm"
	"github.com/cairnbackup/cairn/partinfo/md"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// volumeFlag selects a volume assembled across disks (files, restore-file).
var volumeFlag = &cli.StringFlag{Name: "volume", Usage: "a volume across the VM's disks instead of --disk/--part: lvm/VG/LV, md/ARRAY, ldm/VOLUME or btrfs/NAME (a btrfs of several devices)"}

// openAllDisks opens a reader of every disk of a point.
func openAllDisks(ctx context.Context, repo *blockmap.Repo, p blockmap.Point) ([]*blockmap.DiskReader, []volumes.Disk, error) {
	var drs []*blockmap.DiskReader
	var disks []volumes.Disk
	for _, d := range p.Disks {
		dr, err := repo.OpenDisk(ctx, p, d.Name)
		if err != nil {
			for _, o := range drs {
				o.Close()
			}
			return nil, nil, err
		}
		drs = append(drs, dr)
		disks = append(disks, volumes.Disk{Name: d.Name, R: dr, Size: dr.Size()})
	}
	return drs, disks, nil
}

// openSpannedVolume opens the filesystem of --volume lvm/<vg>/<lv>,
// md/<array>, ldm/<volume> or btrfs/<label or UUID>.
func openSpannedVolume(c *cli.Context, spec string) (*openedDisk, partinfo.Filesystem, error) {
	parts := strings.Split(strings.Trim(spec, "/"), "/")
	isLVM := len(parts) == 3 && parts[0] == volumes.LVMDir && parts[1] != "" && parts[2] != ""
	isMD := len(parts) == 2 && parts[0] == volumes.MDDir && parts[1] != ""
	isLDM := len(parts) == 2 && parts[0] == volumes.LDMDir && parts[1] != ""
	isBtrfs := len(parts) == 2 && parts[0] == volumes.BtrfsDir && parts[1] != ""
	if !isLVM && !isMD && !isLDM && !isBtrfs {
		return nil, nil, fmt.Errorf("--volume %q: want lvm/VG/LV, md/ARRAY, ldm/VOLUME or btrfs/NAME (see `cairn partitions`)", spec)
	}
	repo, err := openRepo(c)
	if err != nil {
		return nil, nil, err
	}
	p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	drs, disks, err := openAllDisks(c.Context, repo, p)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	o := &openedDisk{repo: repo, point: p, others: drs}
	fail := func(err error) (*openedDisk, partinfo.Filesystem, error) {
		o.Close()
		return nil, nil, err
	}
	st, err := volumes.Scan(c.Context, disks)
	if err != nil {
		return fail(err)
	}
	if isBtrfs {
		var names []string
		for _, g := range st.Btrfs {
			name := volumes.BtrfsName(g, st.Btrfs)
			names = append(names, name)
			if name != parts[1] {
				continue
			}
			fsys, err := g.Open()
			if err != nil {
				return fail(fmt.Errorf("%s: btrfs filesystem %s (%d of %d devices found): %w", spec, g.FSID, len(g.Members), g.NumDevices, err))
			}
			return o, partinfo.Safe(fsys, "btrfs"), nil
		}
		return fail(fmt.Errorf("point %s of %s has no btrfs of several devices named %q (it has: %s); a btrfs of one device is read where it lives, with --disk/--part, --volume md/ARRAY or --volume lvm/VG/LV (`cairn partitions --vm %s` shows it)", p.ID, p.VM, parts[1], orNone(names), p.VM))
	}
	if isLDM {
		var names []string
		for _, v := range st.LDM.Volumes {
			names = append(names, v.Name)
			if v.Name != parts[1] {
				continue
			}
			r, err := v.Open()
			if err != nil {
				return fail(err)
			}
			d := partinfo.Detect(r, 0, r.Size())
			fsys, err := fsopen.Open(r, 0, r.Size(), d)
			if err != nil {
				return fail(fmt.Errorf("%s: %s%s", spec, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "), openAdvice(d.Type, err, p.VM)))
			}
			return o, fsys, nil
		}
		return fail(fmt.Errorf("point %s of %s has no dynamic volume %q (it has: %s)", p.ID, p.VM, parts[1], orNone(names)))
	}
	if isMD {
		vol := st.Arrays[parts[1]]
		if vol == nil {
			if err := st.ArrayErrors[parts[1]]; err != nil {
				return fail(err)
			}
			var names []string
			for _, a := range st.MD.Arrays {
				names = append(names, a.Name)
			}
			return fail(fmt.Errorf("point %s of %s has no MD array %q (it has: %s)", p.ID, p.VM, parts[1], orNone(names)))
		}
		d := partinfo.Detect(vol, 0, vol.Size())
		fsys, err := fsopen.Open(vol, 0, vol.Size(), d)
		if err != nil {
			return fail(fmt.Errorf("%s: %s%s", spec, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "), openAdvice(d.Type, err, p.VM)))
		}
		return o, fsys, nil
	}
	set := st.LVM
	vg := set.VG(parts[1])
	if vg == nil {
		var names []string
		for _, v := range set.VGs {
			names = append(names, v.Name)
		}
		msg := fmt.Sprintf("point %s of %s has no LVM volume group %q (it has: %s)", p.ID, p.VM, parts[1], orNone(names))
		if len(set.Problems) > 0 {
			msg += "; problems: " + strings.Join(set.Problems, "; ")
		}
		return fail(fmt.Errorf("%s", msg))
	}
	lv := vg.LV(parts[2])
	if lv == nil {
		var names []string
		for _, l := range vg.VisibleLVs() {
			names = append(names, l.Name)
		}
		return fail(fmt.Errorf("volume group %s has no logical volume %q (it has: %s)", vg.Name, parts[2], orNone(names)))
	}
	vol, err := lv.Open()
	if err != nil {
		msg := err.Error()
		if len(vg.Problems) > 0 && !errors.Is(err, lvm.ErrMissingPV) { // that error names the PV already
			msg += " (volume group: " + strings.Join(vg.Problems, "; ") + ")"
		}
		return fail(fmt.Errorf("%s", msg))
	}
	d := partinfo.Detect(vol, 0, vol.Size())
	fsys, err := fsopen.Open(vol, 0, vol.Size(), d)
	if err != nil {
		return fail(fmt.Errorf("%s: %s%s", spec, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "), openAdvice(d.Type, err, p.VM)))
	}
	return o, fsys, nil
}

// forEachVolume calls fn on every volume of the tables with its path:
// disk/part (lvm/<vg>/<lv> for an LV), or md/<array> for an array's one
// volume.
func forEachVolume(fn func(path string, v *volumeJSON), lists ...[]diskTableJSON) {
	for _, list := range lists {
		for i := range list {
			for j := range list[i].Partitions {
				v := &list[i].Partitions[j]
				path := list[i].Disk + "/" + v.Name
				if list[i].Table == "md" {
					path = list[i].Disk
				}
				fn(path, v)
			}
		}
	}
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// describeLVM lists each volume group of a point as a pseudo disk
// "lvm/<vg>" whose partitions are its visible LVs, and marks the PV
// partitions of the disk tables with their VG.
func describeLVM(ctx context.Context, disks []volumes.Disk, tables []diskTableJSON) ([]diskTableJSON, error) {
	st, err := volumes.Scan(ctx, disks)
	if err != nil {
		return nil, err
	}
	set := st.LVM
	var out []diskTableJSON
	// Dynamic volumes: one pseudo disk ldm/<volume> each.
	ldmOf := map[string][]string{} // region -> the dynamic volumes on it
	for _, v := range st.LDM.Volumes {
		t := diskTableJSON{Disk: volumes.LDMDir + "/" + v.Name, Table: "ldm", Size: v.Size, Warnings: v.Problems}
		t.MadeOf = v.Devices()
		for _, d := range t.MadeOf {
			ldmOf[d] = append(ldmOf[d], t.Disk)
		}
		j := volumeJSON{Name: "whole", Size: v.Size, Type: v.Type, Used: -1, Free: -1}
		if r, err := v.Open(); err != nil {
			j.Filesystem, j.Why, j.VolumeError = partinfo.TypeUnknown, err.Error(), err.Error()
		} else {
			describeVolume(&j, r, r.Size())
		}
		t.Partitions = append(t.Partitions, j)
		out = append(out, t)
	}
	// A dynamic disk is read whole: its LDM partitions say which
	// volumes it holds.
	for i := range tables {
		vols, ok := ldmOf[tables[i].Disk]
		for j := range tables[i].Partitions {
			v := &tables[i].Partitions[j]
			if ok && v.Filesystem == partinfo.TypeLDM {
				v.LDM = vols
				v.Why = "part of a Windows dynamic disk (LDM): its volumes are listed as " + strings.Join(vols, ", ")
			}
		}
	}
	for _, pr := range st.LDM.Problems {
		out = append(out, diskTableJSON{Disk: volumes.LDMDir, Table: "ldm", Warnings: []string{pr}})
	}
	// btrfs of several devices: one pseudo disk btrfs/<name> each, its
	// devices marked in the disk tables.
	btrfsOf := map[string]string{}
	for _, g := range st.Btrfs {
		t := diskTableJSON{Disk: volumes.BtrfsDir + "/" + volumes.BtrfsName(g, st.Btrfs), Table: "btrfs", DiskGUID: g.FSID}
		for _, m := range g.Members {
			t.MadeOf = append(t.MadeOf, fmt.Sprintf("devid%d=%s", m.DevID, m.Region.Name))
			btrfsOf[m.Region.Name] = t.Disk
		}
		if n := g.Missing(); n > 0 {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%d of %d devices found: chunks on the missing devices cannot be read unless mirrored", len(g.Members), g.NumDevices))
		}
		j := volumeJSON{Name: "whole", Type: "btrfs", Filesystem: "btrfs", Label: g.Label, UUID: g.FSID, Used: -1, Free: -1}
		if fsys, err := g.Open(); err != nil {
			j.Why = err.Error()
		} else {
			j.Browsable = true
			if info := fsys.Info(); info.Used >= 0 {
				j.Used, j.Free, t.Size, j.Size = info.Used, info.Free, info.Used+info.Free, info.Used+info.Free
			}
		}
		t.Partitions = append(t.Partitions, j)
		out = append(out, t)
	}
	// MD arrays: members marked, each array a pseudo disk md/<name>
	// holding one volume.
	memberOf := map[string]string{}
	for _, a := range st.MD.Arrays {
		t := diskTableJSON{Disk: volumes.MDDir + "/" + a.Name, Table: "md", DiskGUID: a.UUID, Warnings: a.Problems}
		for r, m := range a.Members {
			where := "missing"
			if m != nil {
				where = m.Device.Name
				memberOf[m.Device.Name] = t.Disk
			}
			t.MadeOf = append(t.MadeOf, fmt.Sprintf("slot%d=%s", r, where))
		}
		j := volumeJSON{Name: "whole", Type: md.LevelName(a.Level), TypeName: md.LevelName(a.Level) + ", MD " + a.Version, Used: -1, Free: -1}
		if vol := st.Arrays[a.Name]; vol == nil {
			unassembledArray(&t, &j, a, st.ArrayErrors[a.Name])
		} else {
			t.Size, j.Size = vol.Size(), vol.Size()
			describeVolume(&j, vol, vol.Size())
		}
		t.Partitions = append(t.Partitions, j)
		out = append(out, t)
	}
	for i := range tables {
		for j := range tables[i].Partitions {
			v := &tables[i].Partitions[j]
			if a, ok := memberOf[tables[i].Disk+"/"+v.Name]; ok {
				v.Array = a
			}
		}
	}
	pvOf := map[string]lvm.FoundPV{}
	for _, pv := range set.PVs {
		pvOf[pv.Device.Name] = pv
	}
	forEachVolume(func(path string, v *volumeJSON) {
		if pv, ok := pvOf[path]; ok && pv.VG != "" {
			v.VG = pv.VG
			v.Why = "LVM physical volume of volume group " + pv.VG + ": its logical volumes are listed under lvm/" + pv.VG
		}
	}, tables, out)
	for _, vg := range set.VGs {
		t := diskTableJSON{Disk: volumes.LVMDir + "/" + vg.Name, Table: "lvm", DiskGUID: vg.UUID, Warnings: vg.Problems}
		var pvs []string
		for _, pv := range vg.PVs {
			t.Size += pv.PECount * vg.ExtentSize
			where := "missing"
			if pv.Device != nil {
				where = pv.Device.Name
			}
			pvs = append(pvs, pv.Name+"="+where)
		}
		sort.Strings(pvs)
		t.MadeOf = pvs
		total, alloc := vg.Extents()
		t.Allocated, t.Unallocated = alloc*vg.ExtentSize, (total-alloc)*vg.ExtentSize
		for _, lv := range vg.VisibleLVs() {
			j := volumeJSON{Name: lv.Name, Size: lv.Size(), Type: lv.Type(), UUID: lv.UUID, Used: -1, Free: -1}
			vol, err := lv.Open()
			if err != nil {
				j.Filesystem, j.Why = partinfo.TypeUnknown, err.Error()
				if lv.Type() != "thin-pool" { // a pool is never read: its thin volumes are
					j.VolumeError = err.Error()
				}
				t.Partitions = append(t.Partitions, j)
				continue
			}
			describeVolume(&j, vol, vol.Size())
			t.Partitions = append(t.Partitions, j)
		}
		out = append(out, t)
	}
	// Devices of a btrfs of several devices (partitions, disks, arrays,
	// LVs) say where its files are.
	forEachVolume(func(path string, v *volumeJSON) {
		if b, ok := btrfsOf[path]; ok {
			v.Btrfs = b
			v.Why = "device of a btrfs of several devices: its files are listed under " + b
		}
	}, tables, out)
	// Problems name their device ("disk/part: ..."): they go to that
	// disk's warnings.
problems:
	for _, pr := range set.Problems {
		for i := range tables {
			if strings.HasPrefix(pr, tables[i].Disk+"/") || strings.HasPrefix(pr, "disk "+tables[i].Disk+":") {
				tables[i].Warnings = append(tables[i].Warnings, pr)
				continue problems
			}
		}
		out = append(out, diskTableJSON{Disk: volumes.LVMDir, Table: "lvm", Warnings: []string{pr}})
	}
	return out, nil
}

// addLVM appends the volume groups of a point to the disk tables.
func addLVM(ctx context.Context, repo *blockmap.Repo, p blockmap.Point, tables []diskTableJSON) ([]diskTableJSON, error) {
	drs, disks, err := openAllDisks(ctx, repo, p)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, dr := range drs {
			dr.Close()
		}
	}()
	vgs, err := describeLVM(ctx, disks, tables)
	if err != nil {
		return nil, err
	}
	return append(tables, vgs...), nil
}

// describeVolume fills the filesystem fields of j from the volume's bytes.
func describeVolume(j *volumeJSON, r io.ReaderAt, size int64) {
	d := partinfo.Detect(r, 0, size)
	j.Filesystem, j.Label, j.Used, j.Free = d.Type, d.Label, d.Used, d.Free
	if d.UUID != "" {
		j.UUID = d.UUID
	}
	fsys, err := fsopen.Open(r, 0, size, d)
	if err != nil {
		j.Why = strings.SplitN(err.Error(), "\n", 2)[0]
		return
	}
	j.Browsable = true
	if info := fsys.Info(); info.Used >= 0 {
		j.Used, j.Free = info.Used, info.Free
	}
	if j.Label == "" {
		j.Label = info(fsys)
	}
}

func info(f partinfo.Filesystem) string { return f.Info().Label }

// unassembledArray describes an MD array that cannot be assembled: the
// size its superblocks declare (not 0 B) and why it is not assembled.
func unassembledArray(t *diskTableJSON, j *volumeJSON, a *md.Array, err error) {
	why := "not assembled"
	if err != nil {
		why += ": " + err.Error()
	}
	if size := a.DeclaredSize(); size > 0 {
		t.Size, j.Size, j.SizeDeclared = size, size, true
		about := ""
		if (a.Level == md.Level0 || a.Level == md.LevelLinear) && a.Missing() > 0 {
			about = "about " // a missing member counts as the smallest present one
		}
		why += fmt.Sprintf(" (its superblocks declare %s%s)", about, bytesize.IEC(size))
	}
	j.Filesystem, j.Why, j.VolumeError = partinfo.TypeUnknown, why, why
}

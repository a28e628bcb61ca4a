package guestfind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/btrfs"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// FS names one guest filesystem of a point and how `cairn files` and
// `cairn restore-file` select it.
type FS struct {
	// Name is the filesystem's path under the mount's fs/: sda/p1,
	// sda/whole, lvm/<vg>/<lv>, md/<array>, ldm/<volume>, btrfs/<name>.
	Name string `json:"filesystem"`
	// Disk and Part select a partition or whole disk (--disk, --part);
	// Volume a volume across disks (--volume). One of the two is set.
	Disk   string `json:"disk,omitempty"`
	Part   string `json:"part,omitempty"`
	Volume string `json:"volume,omitempty"`
	// Type is the detected filesystem type (ext4, xfs, ntfs, ...).
	Type string `json:"fs_type,omitempty"`
}

// Selector says which filesystems of a point to look at: a partition of
// a disk (Disk with Part: "1", "p1" or "whole"), every filesystem of a
// disk (Disk alone), or a volume across disks (Volume: lvm/VG/LV,
// md/ARRAY, ldm/VOLUME, btrfs/NAME). The zero Selector takes every
// filesystem of the point.
type Selector struct {
	Disk, Part, Volume string
}

func (s Selector) match(f FS) bool {
	if s.Volume != "" {
		return f.Volume == strings.Trim(s.Volume, "/")
	}
	if s.Disk == "" {
		return true
	}
	if f.Disk != s.Disk {
		return false
	}
	return s.Part == "" || f.Part == strings.TrimPrefix(s.Part, "p")
}

// readable are the detection types cairn has a reader for.
var readable = map[string]bool{"ext2": true, "ext3": true, "ext4": true, "xfs": true, "ntfs": true,
	"fat12": true, "fat16": true, "fat32": true, "exfat": true, "btrfs": true}

// openFS is one filesystem of an open point: its reader, or why it
// cannot be read in this point.
type openFS struct {
	FS
	fsys partinfo.Filesystem
	err  error
	// noFS: no filesystem cairn reads was found there (err says what
	// was detected).
	noFS bool
	// onDisk: a partition or whole-disk filesystem, on the disk of
	// index disk (its extents are offsets of that disk); false for a
	// volume across disks.
	onDisk bool
	disk   int
}

// pointFS is a point open for reading its guest filesystems: every disk
// through a recording reader, so that the work done on it has a read set.
type pointFS struct {
	p     blockmap.Point
	drs   []Disk
	names []string
	gens  []*genMap
	disks []volumes.Disk // the recording readers
	set   *readSet
	fss   []openFS
}

func (o *pointFS) close() {
	for _, dr := range o.drs {
		dr.Close()
	}
}

// openPoint opens every disk of p through a recording reader (a disk
// that cannot be opened is an error for the whole point).
func openPoint(ctx context.Context, src Source, p blockmap.Point) (*pointFS, error) {
	o := &pointFS{p: p, set: newReadSet(len(p.Disks))}
	for i, d := range p.Disks {
		dr, err := src.OpenDisk(ctx, p, d.Name)
		if err != nil {
			o.close()
			return nil, err
		}
		o.drs = append(o.drs, dr)
		o.names = append(o.names, d.Name)
		o.gens = append(o.gens, newGenMap(dr, d.ID))
		bs := int64(64 << 10) // recorded for nothing when dr has no block identity
		if r, ok := dr.(dataRunner); ok {
			bs = r.BlockBytes()
		}
		o.disks = append(o.disks, volumes.Disk{Name: d.Name, R: &recReader{dr: dr, bs: bs, set: o.set, id: i}, Size: dr.Size()})
	}
	return o, nil
}

// openDirect opens every disk of p without a recording reader, with
// each disk's block generations (when it tells them), and the
// filesystems sel selects (a disk that cannot be opened is an error for
// the whole point).
func openDirect(ctx context.Context, src Source, p blockmap.Point, sel Selector) (*pointFS, error) {
	o := &pointFS{p: p}
	for _, d := range p.Disks {
		dr, err := src.OpenDisk(ctx, p, d.Name)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("open disk %s of %s/%s: %w", d.Name, p.VM, p.ID, err)
		}
		o.drs = append(o.drs, dr)
		o.names = append(o.names, d.Name)
		o.gens = append(o.gens, newGenMap(dr, d.ID))
		o.disks = append(o.disks, volumes.Disk{Name: d.Name, R: dr, Size: dr.Size()})
	}
	if err := o.openFilesystems(ctx, sel); err != nil {
		o.close()
		return nil, err
	}
	return o, nil
}

// reusable reports whether the work done on prev would give the same
// answer on o: every block prev's work read has the same generation here.
func (o *pointFS) reusable(prev *pointFS) bool {
	return prev != nil && sameBytes(prev.set, prev.names, prev.gens, o.gens, o.names)
}

// openFilesystems finds and opens the filesystems sel selects. A
// filesystem that cannot be opened is kept with its error.
func (o *pointFS) openFilesystems(ctx context.Context, sel Selector) error {
	disks := o.disks
	add := func(f FS, r io.ReaderAt, off, size int64, d partinfo.Detection, disk int) {
		f.Type = d.Type
		if !sel.match(f) {
			return
		}
		if !readable[d.Type] {
			// Swap, a PV, an array member... or a filesystem damaged
			// past recognition: only an error where the same name held
			// a filesystem in another point (the caller decides).
			o.fss = append(o.fss, openFS{FS: f, err: partinfo.Unreadable(d), noFS: true})
			return
		}
		fsys, err := fsopen.Open(r, off, size, d)
		if errors.Is(err, btrfs.ErrMultiDevice) {
			return // one device of btrfs/<name>, read there
		}
		o.fss = append(o.fss, openFS{FS: f, fsys: fsys, err: err, onDisk: disk >= 0, disk: disk})
	}
	// What lies across the disks, unless one disk was asked for. A
	// member of an array that could be assembled is read as the array
	// (md/<array>), not as the partition: a raid1 member with its data at
	// offset 0 holds the array's filesystem too, and would show every
	// file two or three times.
	var st *volumes.Stack
	var scanErr error
	inArray := map[string]bool{}
	if sel.Disk == "" {
		if st, scanErr = volumes.Scan(ctx, disks); scanErr == nil {
			inArray = st.InArray()
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for di, d := range disks {
		if err := ctx.Err(); err != nil {
			return err
		}
		vols, t, err := volumes.OfDisk(d.R, d.Size)
		if err != nil {
			if sel.Volume == "" && (sel.Disk == "" || sel.Disk == d.Name) {
				o.fss = append(o.fss, openFS{FS: FS{Name: d.Name, Disk: d.Name}, err: err})
			}
			continue
		}
		if t.DynamicDisk {
			continue // its volumes are ldm/<volume>
		}
		for _, v := range vols {
			if inArray[d.Name+"/"+v.Name] {
				continue
			}
			part := strings.TrimPrefix(v.Name, "p")
			add(FS{Name: d.Name + "/" + v.Name, Disk: d.Name, Part: part}, d.R, v.Offset, v.Size, v.Detection, di)
		}
	}
	if sel.Disk != "" {
		return nil
	}
	if scanErr != nil {
		o.fss = append(o.fss, openFS{FS: FS{Name: "(volumes across disks)"}, err: scanErr})
		return nil
	}
	vol := func(name string, r interface {
		io.ReaderAt
		Size() int64
	}, err error) {
		f := FS{Name: name, Volume: name}
		if err != nil {
			if sel.match(f) {
				o.fss = append(o.fss, openFS{FS: f, err: err})
			}
			return
		}
		add(f, r, 0, r.Size(), partinfo.Detect(r, 0, r.Size()), -1)
	}
	for _, a := range st.MD.Arrays {
		name := volumes.MDDir + "/" + a.Name
		if v := st.Arrays[a.Name]; v != nil {
			vol(name, v, nil)
		} else {
			vol(name, nil, st.ArrayErrors[a.Name])
		}
	}
	for _, vg := range st.LVM.VGs {
		for _, lv := range vg.VisibleLVs() {
			v, err := lv.Open()
			if err != nil {
				vol(volumes.LVPath(lv), nil, err)
				continue
			}
			vol(volumes.LVPath(lv), v, nil)
		}
	}
	for _, lv := range st.LDM.Volumes {
		v, err := lv.Open()
		if err != nil {
			vol(volumes.LDMDir+"/"+lv.Name, nil, err)
			continue
		}
		vol(volumes.LDMDir+"/"+lv.Name, v, nil)
	}
	for _, g := range st.Btrfs {
		name := volumes.BtrfsDir + "/" + volumes.BtrfsName(g, st.Btrfs)
		f := FS{Name: name, Volume: name, Type: "btrfs"}
		if !sel.match(f) {
			continue
		}
		fsys, err := g.Open()
		if err != nil {
			o.fss = append(o.fss, openFS{FS: f, err: fmt.Errorf("btrfs filesystem %s (%d of %d devices found): %w", g.FSID, len(g.Members), g.NumDevices, err)})
			continue
		}
		o.fss = append(o.fss, openFS{FS: f, fsys: partinfo.Safe(fsys, "btrfs")})
	}
	return nil
}

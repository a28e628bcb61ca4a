package guest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/ldm"
	"github.com/cairnbackup/cairn/partinfo/lvm"
	"github.com/cairnbackup/cairn/partinfo/md"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// ldmDir is fs/ldm: one directory per dynamic volume, or nil when the
// point has no dynamic disk.
func ldmDir(p blockmap.Point, set *ldm.Set, log *slog.Logger, ids *volIDs) *staticDir {
	if len(set.Disks) == 0 && len(set.Problems) == 0 {
		return nil
	}
	top := &staticDir{mtime: p.Time}
	problems := append([]string(nil), set.Problems...)
	seen := map[string]bool{}
	for _, vol := range set.Volumes {
		name := strings.NewReplacer("/", "_", "\x00", "_").Replace(vol.Name)
		if name == "" || name == "." || name == ".." || seen[name] || name == fusefs.ErrorFileName {
			problems = append(problems, fmt.Sprintf("a volume named %q is not shown (empty, reserved or duplicate name)", vol.Name))
			continue
		}
		seen[name] = true
		for _, pr := range vol.Problems {
			problems = append(problems, vol.Name+": "+pr)
		}
		v := &volumeDir{log: log, salt: ids.salt(), set: ids.set, src: fusefs.DiskSource{Point: p, Disk: blockmap.DiskInfo{Name: volumes.LDMDir + "/" + name}}}
		v.vol.Name = name
		r, err := vol.Open()
		if err != nil {
			v.err = fmt.Errorf("Dynamic volume %s (%s, %d bytes) cannot be read: %v\nThe raw disk images are in disks/.", vol.Name, vol.Type, vol.Size, err)
		} else {
			v.src.Reader, v.src.Size, v.vol.Size = r, r.Size(), r.Size()
			v.vol.Detection = partinfo.Detect(r, 0, r.Size())
		}
		top.add(name, v)
	}
	if len(problems) > 0 {
		top.errText = "Problems found while reading the dynamic disks (LDM):\n- " + strings.Join(problems, "\n- ") + "\n"
	}
	return top
}

// VolumeProvider returns the fusefs.VolumeProvider that shows LVM volume
// groups as fs/lvm/<vg>/<lv>/, each LV's filesystem read through the
// same readers as partitions. Points without LVM get no fs/lvm. Its
// volumes have their own bound of DefaultMaxOpen open filesystems; a
// mount should use one Guests for both providers instead.
func VolumeProvider(log *slog.Logger) fusefs.VolumeProvider {
	return New(log, 0).VolumeProvider()
}

// VolumeProvider returns the fusefs.VolumeProvider of g (fs/lvm, fs/md,
// fs/ldm, fs/btrfs; see the function VolumeProvider).
func (g *Guests) VolumeProvider() fusefs.VolumeProvider {
	log, set := g.log, g.set
	// Salts 0x4000-0x7fff: apart from the partitions' (Provider counts
	// up from 1) for the first 16,383 volumes of each kind.
	salts := new(atomic.Uint64)
	ids := &volIDs{set: set, salt: func() uint64 { return (0x4000 | salts.Add(1)&0x3fff) << 48 }}
	return func(ctx context.Context, src fusefs.PointSource) ([]fusefs.VolumeDir, error) {
		var disks []volumes.Disk
		for _, d := range src.Disks {
			disks = append(disks, volumes.Disk{Name: d.Disk.Name, R: d.Reader, Size: d.Size})
		}
		st, err := volumes.Scan(ctx, disks)
		if err != nil {
			return nil, err
		}
		p := src.Point
		var out []fusefs.VolumeDir
		if d := mdDir(p, st, log, ids); d != nil {
			out = append(out, fusefs.VolumeDir{Name: volumes.MDDir, Node: d})
		}
		if d := ldmDir(p, st.LDM, log, ids); d != nil {
			out = append(out, fusefs.VolumeDir{Name: volumes.LDMDir, Node: d})
		}
		if d := btrfsDir(p, st, log, ids); d != nil {
			out = append(out, fusefs.VolumeDir{Name: volumes.BtrfsDir, Node: d})
		}
		set := st.LVM
		if len(set.VGs) == 0 && len(set.PVs) == 0 {
			return out, nil
		}
		top := &staticDir{mtime: p.Time}
		if len(set.Problems) > 0 {
			top.errText = "Problems found while assembling LVM volume groups:\n- " + strings.Join(set.Problems, "\n- ") + "\n"
		}
		for _, vg := range set.VGs {
			vd := &staticDir{mtime: p.Time}
			if len(vg.Problems) > 0 {
				vd.errText = fmt.Sprintf("Volume group %s (UUID %s), metadata from %s:\n- %s\n", vg.Name, vg.UUID, vg.MetadataFrom, strings.Join(vg.Problems, "\n- "))
			}
			for _, lv := range vg.VisibleLVs() {
				vd.add(lv.Name, lvDir(p, lv, log, ids))
			}
			top.add(vg.Name, vd)
		}
		return append(out, fusefs.VolumeDir{Name: volumes.LVMDir, Node: top}), nil
	}
}

// mdDir is fs/md: one directory per array with its filesystem, or nil
// when the point has no MD member.
func mdDir(p blockmap.Point, st *volumes.Stack, log *slog.Logger, ids *volIDs) *staticDir {
	if len(st.MD.Members) == 0 && len(st.MD.Problems) == 0 {
		return nil
	}
	top := &staticDir{mtime: p.Time}
	var problems []string
	problems = append(problems, st.MD.Problems...)
	for _, a := range st.MD.Arrays {
		for _, pr := range a.Problems {
			problems = append(problems, fmt.Sprintf("%s (%s, UUID %s): %s", a.Name, md.LevelName(a.Level), a.UUID, pr))
		}
		name := volumes.MDDir + "/" + a.Name
		v := &volumeDir{log: log, salt: ids.salt(), set: ids.set, src: fusefs.DiskSource{Point: p, Disk: blockmap.DiskInfo{Name: name}}}
		v.vol.Name = a.Name
		if vol := st.Arrays[a.Name]; vol != nil {
			v.src.Reader, v.src.Size, v.vol.Size = vol, vol.Size(), vol.Size()
			v.vol.Detection = partinfo.Detect(vol, 0, vol.Size())
			if v.vol.Detection.Type == "lvm2" {
				v.err = fmt.Errorf("MD array %s is an LVM2 physical volume: its logical volumes are under fs/lvm/<vg>/ of this point.", a.Name)
			}
		} else {
			err := st.ArrayErrors[a.Name]
			v.err = fmt.Errorf("MD array %s (%s, UUID %s) cannot be read: %v\nThe raw disk images are in disks/.", a.Name, md.LevelName(a.Level), a.UUID, err)
		}
		top.add(a.Name, v)
	}
	if len(problems) > 0 {
		top.errText = "Problems found while assembling MD arrays:\n- " + strings.Join(problems, "\n- ") + "\n"
	}
	return top
}

// lvDir is the directory of one LV: its filesystem, or ERROR.txt.
func lvDir(p blockmap.Point, lv *lvm.LV, log *slog.Logger, ids *volIDs) *volumeDir {
	name := volumes.LVPath(lv)
	v := &volumeDir{log: log, salt: ids.salt(), set: ids.set,
		src: fusefs.DiskSource{Point: p, Disk: blockmap.DiskInfo{Name: name}}}
	v.vol.Name = lv.Name
	vol, err := lv.Open()
	if err != nil {
		v.err = fmt.Errorf("This is logical volume %s (%s, %d bytes), which cannot be read: %v\nThe raw disk images are in disks/.", name, lv.Type(), lv.Size(), err)
		return v
	}
	v.src.Reader, v.src.Size = vol, vol.Size()
	v.vol.Size = vol.Size()
	v.vol.Detection = partinfo.Detect(vol, 0, vol.Size())
	return v
}

// staticDir is a directory whose children are fixed when it is built,
// plus ERROR.txt when errText is set.
type staticDir struct {
	gofs.Inode
	fusefs.ReadOnly
	mtime   time.Time
	names   []string
	nodes   []gofs.InodeEmbedder
	errText string
}

var (
	_ gofs.NodeOnAdder        = (*staticDir)(nil)
	_ gofs.NodeGetattrer      = (*staticDir)(nil)
	_ gofs.NodeOpendirHandler = (*staticDir)(nil)
	_ gofs.NodeReaddirer      = (*staticDir)(nil)
	_ gofs.NodeLookuper       = (*staticDir)(nil)
)

func (d *staticDir) add(name string, n gofs.InodeEmbedder) {
	d.names = append(d.names, name)
	d.nodes = append(d.nodes, n)
}

func (d *staticDir) OnAdd(ctx context.Context) {
	for i, n := range d.nodes {
		d.AddChild(d.names[i], d.NewPersistentInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFDIR}), false)
	}
	if d.errText != "" {
		f := &gofs.MemRegularFile{Data: []byte(d.errText), Attr: fuse.Attr{Mode: 0o444}}
		f.Attr.SetTimes(&d.mtime, &d.mtime, &d.mtime)
		d.AddChild(fusefs.ErrorFileName, d.NewPersistentInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
}

func (d *staticDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.mtime)
	out.SetTimeout(timeout)
	return 0
}

func (d *staticDir) entries() []fuse.DirEntry {
	var es []fuse.DirEntry
	for _, n := range d.names {
		es = append(es, fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR})
	}
	if d.errText != "" {
		es = append(es, fuse.DirEntry{Name: fusefs.ErrorFileName, Mode: syscall.S_IFREG})
	}
	return fusefs.ChildInos(&d.Inode, es)
}

func (d *staticDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return fusefs.OpenCachedDir(&d.Inode, d.entries())
}

func (d *staticDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return gofs.NewListDirStream(d.entries()), 0
}

func (d *staticDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := d.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	var a fuse.AttrOut
	if g, ok := ch.Operations().(gofs.NodeGetattrer); ok {
		if errno := g.Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
	}
	out.Attr = a.Attr
	out.SetEntryTimeout(timeout)
	out.SetAttrTimeout(timeout)
	return ch, 0
}

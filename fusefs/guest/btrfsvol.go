package guest

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/btrfs"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// btrfsDir is fs/btrfs: one directory per btrfs of several devices, read
// from its devices among the point's disks, or nil when there is none.
func btrfsDir(p blockmap.Point, st *volumes.Stack, log *slog.Logger, ids *volIDs) *staticDir {
	if len(st.Btrfs) == 0 {
		return nil
	}
	top := &staticDir{mtime: p.Time}
	var problems []string
	for _, g := range st.Btrfs {
		name := volumes.BtrfsName(g, st.Btrfs)
		var found []string
		for _, m := range g.Members {
			found = append(found, fmt.Sprintf("%s (devid %d)", m.Region.Name, m.DevID))
		}
		if g.Missing() > 0 {
			problems = append(problems, fmt.Sprintf("%s (UUID %s): %d of %d devices found (%s); chunks on the missing devices "+
				"cannot be read unless mirrored", name, g.FSID, len(g.Members), g.NumDevices, strings.Join(found, ", ")))
		}
		v := &volumeDir{log: log, salt: ids.salt(), set: ids.set, src: fusefs.DiskSource{Point: p, Disk: blockmap.DiskInfo{Name: volumes.BtrfsDir + "/" + name}}}
		v.vol.Name = name
		v.vol.Detection = partinfo.Detection{Type: "btrfs", UUID: g.FSID, Label: g.Label}
		v.openFS = func() (partinfo.Filesystem, error) {
			// Each device's small reads come from cached chunks, as a
			// partition's do.
			var rs []partinfo.Region
			for _, m := range g.Members {
				r := m.Region
				r.R, r.Off = newChunkCache(partinfo.Region{Name: r.Name, R: r.R, Off: r.Off, Size: r.Size}, r.Size), 0
				rs = append(rs, r)
			}
			fsys, err := btrfs.OpenDevices(rs)
			if err != nil {
				return nil, fmt.Errorf("btrfs filesystem %s of %d devices (%s): %w", g.FSID, g.NumDevices, strings.Join(found, ", "), err)
			}
			return partinfo.Safe(fsys, "btrfs"), nil
		}
		top.add(name, v)
	}
	if len(problems) > 0 {
		top.errText = "Problems found while assembling btrfs filesystems of several devices:\n- " + strings.Join(problems, "\n- ") + "\n"
	}
	return top
}

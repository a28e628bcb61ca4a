package test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/ldmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestLDMRAID5Volume is a Windows VM of three MBR dynamic disks holding
// one RAID-5 NTFS volume (LDM database by internal/ldmfixture, read back
// by ldmtool in partinfo/ldm's tests; parity left-symmetric as libldm
// maps these volumes). Imported and mounted, fs/ldm/Parity/ equals its
// source tree; a point without the middle disk shows the same tree,
// rebuilt from parity.
func TestLDMRAID5Volume(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkntfs", "ntfs-3g")
	dir := t.TempDir()
	v := ldmfixture.Volume{Name: "Parity", Size: 64 * mib, Comps: []ldmfixture.Component{{RAID5: true, Stripe: 64 << 10, Parts: []ldmfixture.Part{
		{Disk: 0, Start: 0, Size: 32 * mib, Index: 0}, {Disk: 1, Start: 0, Size: 32 * mib, Index: 1}, {Disk: 2, Start: 0, Size: 32 * mib, Index: 2}}}}}
	disks, srcs := buildLDMDisks(t, dir, []int64{40 * mib, 40 * mib, 40 * mib}, []ldmfixture.Volume{v}, 77)
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	full := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "win", "--disk", "disk0", "--disk", "disk1", "--disk", "disk2", disks[0], disks[1], disks[2]))
	degraded := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "win2", "--disk", "disk0", "--disk", "disk2", disks[0], disks[2]))
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	for _, p := range []struct{ vm, id string }{{"win", full}, {"win2", degraded}} {
		t.Run(p.vm, func(t *testing.T) {
			compareTrees(t, walkTree(t, srcs["Parity"], nil), walkTree(t, filepath.Join(mnt, p.vm, p.id, "fs", "ldm", "Parity"), ntfsMetadata),
				compareOpts{mtimeGran: time.Microsecond})
		})
	}
}

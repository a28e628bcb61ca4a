package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestCentOSLayout is the CentOS-style VM of buildCentOS (MD raid1
// /boot, LVM on MD raid1 for root and swap) imported, mounted and compared
// file by file; a point holding only the first disk reads both arrays
// degraded.
func TestCentOSLayout(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.ext4", "mdadm")...)
	dir := t.TempDir()
	fx := buildCentOS(t, dir)
	disks, srcBoot, srcRoot := fx.disks, fx.srcBoot, fx.srcRoot

	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	full := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "centos", "--disk", "sda", "--disk", "sdb", disks[0], disks[1]))
	half := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "halfcentos", "--disk", "sda", disks[0]))

	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	noLost := func(rel string) bool { return rel == "lost+found" }
	cmp := compareOpts{modes: true, links: true, mtimeGran: time.Second}
	fsOf := func(vm, point string, p ...string) string {
		return filepath.Join(append([]string{mnt, vm, point, "fs"}, p...)...)
	}
	if got := listNames(t, fsOf("centos", full)); got != "lvm,md,sda,sdb" {
		t.Fatalf("fs/ lists %s", got)
	}
	if got := listNames(t, fsOf("centos", full, "md")); got != "boot,pv" {
		t.Fatalf("fs/md lists %s", got)
	}
	for _, point := range []struct{ vm, id string }{{"centos", full}, {"halfcentos", half}} {
		t.Run(point.vm, func(t *testing.T) {
			compareTrees(t, walkTree(t, srcBoot, nil), walkTree(t, fsOf(point.vm, point.id, "md", "boot"), noLost), cmp)
			compareTrees(t, walkTree(t, srcRoot, nil), walkTree(t, fsOf(point.vm, point.id, "lvm", "centos", "root"), noLost), cmp)
			if b, err := os.ReadFile(fsOf(point.vm, point.id, "md", "pv", fusefs.ErrorFileName)); err != nil || !strings.Contains(string(b), "fs/lvm") {
				t.Errorf("md/pv/ERROR.txt %q %v", b, err)
			}
			if b, err := os.ReadFile(fsOf(point.vm, point.id, "sda", "p2", fusefs.ErrorFileName)); err != nil || !strings.Contains(string(b), "fs/md/") {
				t.Errorf("sda/p2/ERROR.txt %q %v", b, err)
			}
		})
	}
	if b, err := os.ReadFile(fsOf("halfcentos", half, "md", fusefs.ErrorFileName)); err != nil || !strings.Contains(string(b), "slot 1 of 2 has no member") {
		t.Errorf("degraded: md/ERROR.txt %q %v", b, err)
	}
	if _, err := os.Stat(fsOf("centos", full, "md", fusefs.ErrorFileName)); !os.IsNotExist(err) {
		t.Errorf("complete arrays have an md/ERROR.txt: %v", err)
	}

	t.Run("cli", func(t *testing.T) {
		tables, _ := cairnPartitions(t, repoDir, "centos", full)
		var got []string
		for _, tb := range tables {
			for _, p := range tb.Partitions {
				got = append(got, fmt.Sprintf("%s/%s=%s:%v:%s:%s", tb.Disk, p.Name, p.Filesystem, p.Browsable, p.Array, p.VG))
			}
		}
		want := "sda/p1=ext4:true:md/boot: sda/p2=linux_raid_member:false:md/pv: sdb/p1=ext4:true:md/boot: sdb/p2=linux_raid_member:false:md/pv: " +
			"md/boot/whole=ext4:true:: md/pv/whole=lvm2:false::centos lvm/centos/root=ext4:true:: lvm/centos/swap=unknown:false::"
		if strings.Join(got, " ") != want {
			t.Errorf("partitions:\n got %s\nwant %s", strings.Join(got, " "), want)
		}
		// --disk takes a disk (described with the arrays and VGs its
		// partitions belong to, as without --disk) or a volume as the
		// DISK column names it; a wrong one lists what there is.
		one := func(disk string) []partitionTable {
			var tb []partitionTable
			raw := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "centos", "--point", full, "--json", "--disk", disk)
			if err := json.Unmarshal([]byte(raw), &tb); err != nil {
				t.Fatalf("partitions --disk %s: %v\n%s", disk, err, raw)
			}
			return tb
		}
		if tb := one("sda"); len(tb) != 1 || len(tb[0].Partitions) != 2 || tb[0].Partitions[1].Array != "md/pv" {
			t.Errorf("partitions --disk sda: %+v", tb)
		}
		if tb := one("lvm/centos"); len(tb) != 1 || tb[0].Disk != "lvm/centos" || len(tb[0].Partitions) != 2 {
			t.Errorf("partitions --disk lvm/centos: %+v", tb)
		}
		if res := runCairn(t, nil, "--repo", repoDir, "partitions", "--vm", "centos", "--disk", "md/nope"); res.code == 0 ||
			!strings.Contains(res.stderr, "it has: sda, sdb, md/boot, md/pv, lvm/centos") {
			t.Errorf("partitions --disk md/nope: exit %d %s", res.code, res.stderr)
		}
		// The text table says each array's RAID level, not only its
		// superblock version.
		if ptxt := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "centos"); !regexp.MustCompile(`(?m)^md/boot +md +whole .* raid1, MD 1\.0 `).MatchString(ptxt) {
			t.Errorf("partitions does not say md/boot is raid1:\n%s", ptxt)
		}
		// An LV is a volume, not a partition.
		if res := runCairn(t, nil, "--repo", repoDir, "files", "--vm", "centos", "--volume", "lvm/centos/swap", "/"); res.code == 0 ||
			!strings.Contains(res.stderr, "This volume holds") {
			t.Errorf("files --volume lvm/centos/swap: exit %d %s", res.code, res.stderr)
		}
		// The array holding the PV says which --volume reads its LVs.
		if res := runCairn(t, nil, "--repo", repoDir, "files", "--vm", "centos", "--volume", "md/pv", "/"); res.code == 0 ||
			!strings.Contains(res.stderr, "--volume lvm/VG/LV") || strings.Contains(res.stderr, "--disk/--part") {
			t.Errorf("files --volume md/pv: exit %d %s", res.code, res.stderr)
		}
		ls := mustCairn(t, "--repo", repoDir, "files", "--vm", "halfcentos", "--volume", "md/boot", "/")
		if !strings.Contains(ls, "names") {
			t.Errorf("files --volume md/boot:\n%s", ls)
		}
	})
	t.Run("search", func(t *testing.T) { searchAcrossVolumes(t, repoDir, full, srcBoot, srcRoot) })
}

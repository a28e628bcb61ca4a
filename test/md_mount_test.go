package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/mdfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestCentOSLayout is a CentOS-style VM of two disks: partition 1 of
// each is a member of MD raid1 "boot" (superblock 1.0, ext4 /boot),
// partition 2 a member of MD raid1 "pv" (superblock 1.2) that is the LVM
// physical volume of VG "centos" with LVs root (ext4) and swap. The md
// driver is not available here, so the members are laid out by
// internal/mdfixture (superblocks checked with mdadm --examine); the VG is
// made by lvm2 on the array's bytes. Imported, mounted and compared file
// by file; a point holding only the first disk reads both arrays
// degraded.
func TestCentOSLayout(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.ext4", "mdadm")...)
	dir := t.TempDir()
	bootSpec := mdfixture.Spec{Version: "1.0", Level: mdfixture.Level1, Members: 2, MemberLen: 40 * mib, Name: "boot"}
	pvSpec := mdfixture.Spec{Version: "1.2", Level: mdfixture.Level1, Members: 2, MemberLen: 100 * mib, Name: "pv"}

	srcBoot, srcRoot := filepath.Join(dir, "src-boot"), filepath.Join(dir, "src-root")
	makeGuestTree(t, srcBoot, treeSpec{files: 60, bigDir: 20, depth: 3, bigFile: 3 * mib, modes: true}, 31)
	makeGuestTree(t, srcRoot, treeSpec{files: 300, bigDir: 200, depth: 8, bigFile: 8 * mib, links: true, modes: true, longNames: true}, 32)
	bootImg := filepath.Join(dir, "boot.ext4")
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "boot", "-d", srcBoot, bootImg, fmt.Sprintf("%dK", bootSpec.ArraySize()/1024))
	pvImg := filepath.Join(dir, "pv.img")
	makeImage(t, pvImg, pvSpec.ArraySize())
	offs := lvmfixture.Simple(t, dir, pvImg, "centos", []string{"root", "swap"}, []int{60, 8})
	rootImg := filepath.Join(dir, "root.ext4")
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", srcRoot, rootImg, "60M")
	writeAt(t, pvImg, rootImg, offs["root"])

	readAll := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bootDir, pvDir := filepath.Join(dir, "boot-members"), filepath.Join(dir, "pv-members")
	os.Mkdir(bootDir, 0o755)
	os.Mkdir(pvDir, 0o755)
	bootMembers := bootSpec.Build(t, bootDir, readAll(bootImg))
	pvMembers := pvSpec.Build(t, pvDir, readAll(pvImg))
	for _, m := range append(bootMembers, pvMembers...) {
		if out := mdfixture.Examine(t, m); !strings.Contains(mdfixture.FieldOf(out, "Checksum"), "correct") {
			t.Fatalf("mdadm --examine %s:\n%s", m, out)
		}
	}
	var disks []string
	for i, name := range []string{"sda", "sdb"} {
		d := filepath.Join(dir, name+".img")
		makeImage(t, d, 142*mib)
		sh(t, "sgdisk", "-n", "1:2048:+40M", "-t", "1:fd00", "-n", "2:0:+100M", "-t", "2:fd00", d)
		writeAt(t, d, bootMembers[i], 1*mib)
		writeAt(t, d, pvMembers[i], 41*mib)
		disks = append(disks, d)
	}

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
			if b, err := os.ReadFile(fsOf(point.vm, point.id, "md", "pv", guest.ErrorFileName)); err != nil || !strings.Contains(string(b), "fs/lvm") {
				t.Errorf("md/pv/ERROR.txt %q %v", b, err)
			}
			if b, err := os.ReadFile(fsOf(point.vm, point.id, "sda", "p2", guest.ErrorFileName)); err != nil || !strings.Contains(string(b), "fs/md/") {
				t.Errorf("sda/p2/ERROR.txt %q %v", b, err)
			}
		})
	}
	if b, err := os.ReadFile(fsOf("halfcentos", half, "md", guest.ErrorFileName)); err != nil || !strings.Contains(string(b), "slot 1 of 2 has no member") {
		t.Errorf("degraded: md/ERROR.txt %q %v", b, err)
	}
	if _, err := os.Stat(fsOf("centos", full, "md", guest.ErrorFileName)); !os.IsNotExist(err) {
		t.Errorf("complete arrays have an md/ERROR.txt: %v", err)
	}

	t.Run("cli", func(t *testing.T) {
		out := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "centos", "--point", full, "--json")
		var tables []struct {
			Disk       string   `json:"disk"`
			Table      string   `json:"table"`
			MadeOf     []string `json:"made_of"`
			Partitions []struct {
				Name       string `json:"name"`
				Filesystem string `json:"filesystem"`
				Browsable  bool   `json:"browsable"`
				VG         string `json:"volume_group"`
				Array      string `json:"md_array"`
			} `json:"partitions"`
		}
		if err := json.Unmarshal([]byte(out), &tables); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
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
		ls := mustCairn(t, "--repo", repoDir, "files", "--vm", "halfcentos", "--volume", "md/boot", "/")
		if !strings.Contains(ls, "names") {
			t.Errorf("files --volume md/boot:\n%s", ls)
		}
	})
}

package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBtrfsOnVolumesLayout is the NAS-style VM of buildNAS: a btrfs on an
// MD raid1, a btrfs on an LV (on another raid1) and a btrfs of two
// devices, one an LV and one an MD array. Imported and mounted,
// fs/md/nas, fs/lvm/nasvg/vol1 and fs/btrfs/pool each equal the kernel's
// mount of the same bytes of sda (loop devices over the member's data
// area and the LV's extents) path by path; the volumes that are devices
// of pool say where it is shown; `cairn files`, `restore-file --volume`
// and `cairn partitions` show the same stack.
func TestBtrfsOnVolumesLayout(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.btrfs", "btrfs", "mdadm", "mount", "umount")...)
	dir := t.TempDir()
	fx := buildNAS(t, dir)
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	point := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "nas", "--disk", "sda", "--disk", "sdb", fx.disks[0], fx.disks[1]))
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	fsOf := func(p ...string) string { return filepath.Join(append([]string{mnt, "nas", point, "fs"}, p...)...) }
	if got := listNames(t, fsOf()); got != "btrfs,lvm,md,sda,sdb" {
		t.Fatalf("fs/ lists %s", got)
	}
	for _, c := range []struct {
		name string
		path []string
		devs []byteRange
	}{
		{"btrfs on md", []string{"md", "nas"}, []byteRange{fx.nasroot}},
		{"btrfs on lv", []string{"lvm", "nasvg", "vol1"}, []byteRange{fx.vol1}},
		{"btrfs on lv and md", []string{"btrfs", "pool"}, []byteRange{fx.pool0, fx.pool1}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			kmnt := filepath.Join(dir, "kernel-"+c.path[len(c.path)-1])
			mountBtrfsRanges(t, kmnt, c.devs...)
			compareTrees(t, walkTree(t, kmnt, nil), walkTree(t, fsOf(c.path...), nil), compareOpts{modes: true, links: true})
		})
	}
	for _, p := range [][]string{{"lvm", "nasvg", "pool0"}, {"md", "poolmd"}} {
		if b, err := os.ReadFile(fsOf(append(p, fusefs.ErrorFileName)...)); err != nil || !strings.Contains(string(b), "fs/btrfs/") {
			t.Errorf("%s/ERROR.txt %q %v, want a pointer to fs/btrfs/", strings.Join(p, "/"), b, err)
		}
	}
	if _, err := os.Stat(fsOf("btrfs", fusefs.ErrorFileName)); !os.IsNotExist(err) {
		t.Errorf("complete filesystem has a btrfs/ERROR.txt: %v", err)
	}

	t.Run("sda only", func(t *testing.T) {
		// Every array degraded to one member: the same bytes.
		half := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "halfnas", "--disk", "sda", fx.disks[0]))
		b, err := os.ReadFile(filepath.Join(mnt, "halfnas", half, "fs", "btrfs", "pool", "big.bin"))
		if err != nil || !bytes.Equal(b, fx.poolBig) {
			t.Errorf("pool/big.bin from sda alone: %d bytes, %v", len(b), err)
		}
		if got := listNames(t, filepath.Join(mnt, "halfnas", half, "fs", "lvm", "nasvg", "vol1", "share")); !strings.Contains(got, "etc") {
			t.Errorf("vol1/share from sda alone lists %s", got)
		}
	})
	t.Run("cli", func(t *testing.T) {
		for vol, file := range map[string]string{"md/nas": "/@home/user/data/big.bin", "lvm/nasvg/vol1": "/share/data/big.bin", "btrfs/pool": "/big.bin"} {
			parent := filepath.Dir(file)
			if ls := mustCairn(t, "--repo", repoDir, "files", "--vm", "nas", "--volume", vol, parent); !strings.Contains(ls, filepath.Base(file)) {
				t.Errorf("files --volume %s %s does not list %s:\n%s", vol, parent, filepath.Base(file), ls)
			}
			want, err := os.ReadFile(fsOf(append([]string{vol}, strings.Split(file[1:], "/")...)...))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, strings.ReplaceAll(vol, "/", "_")+".restored")
			mustCairn(t, "--repo", repoDir, "restore-file", "--vm", "nas", "--volume", vol, file, out)
			if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) || len(want) == 0 {
				t.Errorf("restore-file --volume %s %s: %d bytes (%v), the mount has %d", vol, file, len(got), err, len(want))
			}
		}
		if got, err := os.ReadFile(filepath.Join(dir, "btrfs_pool.restored")); err != nil || !bytes.Equal(got, fx.poolBig) {
			t.Errorf("restore-file --volume btrfs/pool /big.bin: %d bytes, %v; want what was written", len(got), err)
		}
		tables, out := cairnPartitions(t, repoDir, "nas", "")
		var got []string
		for _, tb := range tables {
			if !strings.HasPrefix(tb.Disk, "sd") {
				got = append(got, tb.Disk+"<"+strings.Join(tb.MadeOf, ",")+">")
			}
			for _, p := range tb.Partitions {
				if strings.HasPrefix(tb.Disk, "sdb") {
					continue
				}
				where := ""
				if strings.Contains(p.Why, "listed under btrfs/pool") {
					where = "->btrfs/pool"
				}
				got = append(got, fmt.Sprintf("%s/%s=%s:%v%s", tb.Disk, p.Name, p.Filesystem, p.Browsable, where))
			}
		}
		want := "sda/p1=linux_raid_member:false sda/p2=linux_raid_member:false sda/p3=linux_raid_member:false " +
			"btrfs/pool<devid1=lvm/nasvg/pool0,devid2=md/poolmd> btrfs/pool/whole=btrfs:true " +
			"md/nas<slot0=sda/p1,slot1=sdb/p1> md/nas/whole=btrfs:true md/poolmd<slot0=sda/p3,slot1=sdb/p3> md/poolmd/whole=btrfs:false->btrfs/pool " +
			"md/vault<slot0=sda/p2,slot1=sdb/p2> md/vault/whole=lvm2:false " +
			"lvm/nasvg<pv0=md/vault> lvm/nasvg/vol1=btrfs:true lvm/nasvg/pool0=btrfs:false->btrfs/pool"
		if g := strings.Join(got, " "); g != want {
			t.Errorf("partitions:\n got %s\nwant %s\n%s", g, want, out)
		}
		if text := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "nas"); !strings.Contains(text, "btrfs/pool: made of devid1=lvm/nasvg/pool0 devid2=md/poolmd") {
			t.Errorf("partitions text does not show pool's devices:\n%s", text)
		}
	})
}

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestLVMVolumes builds a VM of two disks holding one LVM volume group
// (made by lvm2 on loop devices): a linear LV crossing from disk sda's
// partition 2 to the whole disk sdb, a striped LV over both, a raid1 LV,
// an old-style mirror LV, a raid5 LV and a thin pool with a thin LV and
// its snapshot, each with its own ext4. Imported as two
// points (the linear LV's filesystem changes in between), the mount shows
// every LV under fs/lvm/vgdata/<lv>/ with every file equal to its source
// (content, mode, links, times, owner). A VM with only the first disk
// shows the mirrors (healthy leg) and explains what is missing.
func TestLVMVolumes(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.ext4")...)
	dir := t.TempDir()
	type lvCase struct {
		name string
		spec treeSpec
	}
	cases := []lvCase{
		{"span", treeSpec{files: 400, bigDir: 300, depth: 12, bigFile: 24 * mib, links: true, modes: true, longNames: true, sparse: true}},
		{"stripe", treeSpec{files: 200, bigDir: 50, depth: 5, bigFile: 4 * mib, links: true, modes: true}},
		{"mirror1", treeSpec{files: 200, bigDir: 50, depth: 5, bigFile: 4 * mib, links: true, modes: true}},
		{"legacy", treeSpec{files: 100, bigDir: 20, depth: 3, bigFile: 2 * mib, modes: true}},
		{"thin1", treeSpec{files: 200, bigDir: 50, depth: 5, bigFile: 4 * mib, links: true, modes: true}},
		{"thin2", treeSpec{}}, // thin1's tree, changed: a snapshot
		{"parity", treeSpec{files: 100, bigDir: 20, depth: 3, bigFile: 3 * mib, links: true, modes: true}},
	}
	sizes := map[string]int64{"span": lvmfixture.SpanSize, "stripe": lvmfixture.StripeSize, "mirror1": lvmfixture.RaidSize,
		"legacy": lvmfixture.MirrorSize, "thin1": lvmfixture.ThinSize, "thin2": lvmfixture.ThinSize, "parity": lvmfixture.ParitySize}
	srcs := map[string]string{}
	fill := map[string]string{}
	mkfs := func(name, src string) string {
		img := filepath.Join(dir, name+".ext4")
		os.Remove(img)
		sh(t, "mkfs.ext4", "-q", "-F", "-L", name, "-d", src, img, fmt.Sprintf("%dK", sizes[name]/1024))
		return img
	}
	for i, c := range cases {
		src := filepath.Join(dir, "src-"+c.name)
		if c.name == "thin2" {
			sh(t, "cp", "-a", srcs["thin1"], src)
			os.WriteFile(filepath.Join(src, "etc", "d01", "file-0001.conf"), []byte("changed in the snapshot\n"), 0o644)
			os.WriteFile(filepath.Join(src, "only-in-thin2.txt"), []byte("new\n"), 0o644)
		} else {
			makeGuestTree(t, src, c.spec, uint64(i+10))
		}
		if err := os.Lchown(filepath.Join(src, "empty"), 4321, 8765); err != nil {
			t.Fatal(err)
		}
		srcs[c.name] = src
		fill[c.name] = mkfs(c.name, src)
	}
	layout := lvmfixture.Build(t, dir, fill)

	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	p1 := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "lvmvm", "--disk", "sda", "--disk", "sdb", layout.Disks[0], layout.Disks[1]))
	spanSrc := srcs["span"]
	os.WriteFile(filepath.Join(spanSrc, "etc", "d00", "file-0000.conf"), []byte("changed in point 2\n"), 0o644)
	os.WriteFile(filepath.Join(spanSrc, "added-in-point-2.txt"), []byte("new\n"), 0o644)
	layout.Fill("span", mkfs("span", spanSrc))
	p2 := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "lvmvm", "--disk", "sda", "--disk", "sdb", layout.Disks[0], layout.Disks[1]))
	half := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "halfvm", "--disk", "sda", layout.Disks[0]))

	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	lvRoot := func(vm, point, lv string) string { return filepath.Join(mnt, vm, point, "fs", "lvm", "vgdata", lv) }

	if got := listNames(t, filepath.Join(mnt, "lvmvm", p2, "fs")); got != "lvm,sda,sdb" {
		t.Fatalf("fs/ lists %s, want lvm,sda,sdb", got)
	}
	if got := listNames(t, filepath.Join(mnt, "lvmvm", p2, "fs", "lvm", "vgdata")); got != "legacy,mirror1,parity,pool,span,stripe,thin1,thin2" {
		t.Fatalf("fs/lvm/vgdata lists %s", got)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := walkTree(t, srcs[c.name], nil)
			got := walkTree(t, lvRoot("lvmvm", p2, c.name), func(rel string) bool { return rel == "lost+found" })
			compareTrees(t, want, got, compareOpts{modes: true, links: true, mtimeGran: time.Second})
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(lvRoot("lvmvm", p2, c.name), "empty"), &st); err != nil || st.Uid != 4321 || st.Gid != 8765 {
				t.Errorf("owner of empty: %d:%d (%v), want 4321:8765", st.Uid, st.Gid, err)
			}
		})
	}
	t.Run("changes over time", func(t *testing.T) {
		if b, err := os.ReadFile(filepath.Join(lvRoot("lvmvm", p1, "span"), "etc", "d00", "file-0000.conf")); err != nil || strings.Contains(string(b), "changed") {
			t.Fatalf("point 1 shows %q %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(lvRoot("lvmvm", p1, "span"), "added-in-point-2.txt")); !os.IsNotExist(err) {
			t.Fatalf("point 1 shows a later file: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(lvRoot("lvmvm", p2, "span"), "etc", "d00", "file-0000.conf")); string(b) != "changed in point 2\n" {
			t.Fatalf("point 2 shows %q", b)
		}
	})
	t.Run("thin pool", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(lvRoot("lvmvm", p2, "pool"), fusefs.ErrorFileName))
		if err != nil || !strings.Contains(string(b), "thin pool") {
			t.Fatalf("pool/ERROR.txt: %q %v", b, err)
		}
	})
	t.Run("the PV partition points at fs/lvm", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(mnt, "lvmvm", p2, "fs", "sda", "p2", fusefs.ErrorFileName))
		if err != nil || !strings.Contains(string(b), "fs/lvm/") {
			t.Fatalf("fs/sda/p2/ERROR.txt: %q %v", b, err)
		}
	})
	t.Run("missing disk", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(mnt, "halfvm", half, "fs", "lvm", "vgdata", fusefs.ErrorFileName))
		if err != nil || !strings.Contains(string(b), "is on none of the disks of this point") {
			t.Fatalf("fs/lvm/vgdata/ERROR.txt: %q %v", b, err)
		}
		for _, lv := range []string{"span", "stripe", "thin1", "parity"} {
			b, err := os.ReadFile(filepath.Join(lvRoot("halfvm", half, lv), fusefs.ErrorFileName))
			if err != nil || !strings.Contains(string(b), "missing") || !strings.Contains(string(b), "on none of the disks") {
				t.Errorf("%s/ERROR.txt: %q %v", lv, b, err)
			}
		}
		for _, lv := range []string{"mirror1", "legacy"} {
			compareTrees(t, walkTree(t, srcs[lv], nil), walkTree(t, lvRoot("halfvm", half, lv), func(rel string) bool { return rel == "lost+found" }),
				compareOpts{modes: true, links: true, mtimeGran: time.Second})
		}
	})
	t.Run("cli", func(t *testing.T) {
		tables, out := cairnPartitions(t, repoDir, "lvmvm", p2)
		if len(tables) != 3 {
			t.Fatalf("partitions --json: %d tables, want 3\n%s", len(tables), out)
		}
		if tables[0].Partitions[1].VG != "vgdata" || tables[1].Partitions[0].VG != "vgdata" {
			t.Errorf("PVs not marked with their VG:\n%s", out)
		}
		vg := tables[2]
		if vg.Disk != "lvm/vgdata" || vg.Table != "lvm" || strings.Join(vg.MadeOf, " ") != "pv0=sda/p2 pv1=sdb/whole" {
			t.Errorf("VG entry %+v", vg)
		}
		var got []string
		for _, p := range vg.Partitions {
			got = append(got, fmt.Sprintf("%s=%s:%s:%s:%v", p.Name, p.Type, p.Filesystem, p.Label, p.Browsable))
		}
		want := "legacy=mirror:ext4:legacy:true mirror1=raid1:ext4:mirror1:true parity=raid5_ls:ext4:parity:true pool=thin-pool:unknown::false span=linear:ext4:span:true " +
			"stripe=striped:ext4:stripe:true thin1=thin:ext4:thin1:true thin2=thin:ext4:thin2:true"
		if strings.Join(sortStrings(got), " ") != want {
			t.Errorf("LVs %v, want %s", got, want)
		}
		text := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "lvmvm", "--point", p2)
		if !strings.Contains(text, "(PV of vgdata)") || !strings.Contains(text, "lvm/vgdata") {
			t.Errorf("partitions text:\n%s", text)
		}
		ls := mustCairn(t, "--repo", repoDir, "files", "--vm", "lvmvm", "--point", p2, "--volume", "lvm/vgdata/span", "/")
		if !strings.Contains(ls, "added-in-point-2.txt") {
			t.Errorf("files --volume lvm/vgdata/span:\n%s", ls)
		}
		dest := filepath.Join(dir, "restored")
		mustCairn(t, "--repo", repoDir, "restore-file", "--vm", "lvmvm", "--point", p2, "--volume", "lvm/vgdata/stripe", "/data/big.bin", dest)
		if a, b := mountSHA256File(t, dest), mountSHA256File(t, filepath.Join(srcs["stripe"], "data", "big.bin")); a != b {
			t.Errorf("restored big.bin differs")
		}
		r := runCairn(t, nil, "--repo", repoDir, "files", "--vm", "halfvm", "--volume", "lvm/vgdata/span", "/")
		if r.code == 0 || strings.Count(r.stderr, "on none of the disks") != 1 { // said once, not again as the VG's problem
			t.Errorf("files on a LV with a missing PV: exit %d\n%s", r.code, r.stderr)
		}
		// partitions says the LV cannot be read and why, not that it
		// holds an unknown filesystem.
		ptxt := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "halfvm")
		if !regexp.MustCompile(`(?m)^lvm/vgdata +lvm +span .*\(unreadable volume\)`).MatchString(ptxt) ||
			!strings.Contains(ptxt, "lvm/vgdata/span: cannot be read: ") {
			t.Errorf("partitions of a VG missing a PV:\n%s", ptxt)
		}
		tables, raw := cairnPartitions(t, repoDir, "halfvm", "")
		for _, tb := range tables {
			for _, p := range tb.Partitions {
				if tb.Disk == "lvm/vgdata" && p.Name == "span" && !strings.Contains(p.VolumeError, "on none of the disks") {
					t.Errorf("partitions --json: span has no volume_error:\n%s", raw)
				}
			}
		}
		r = runCairn(t, nil, "--repo", repoDir, "files", "--vm", "lvmvm", "--volume", "lvm/vgdata/nope", "/")
		if r.code == 0 || !strings.Contains(r.stderr, "it has: ") {
			t.Errorf("files on an unknown LV: exit %d\n%s", r.code, r.stderr)
		}
	})
}

func listNames(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// mountVolumes mounts the repository with the guest filesystem and volume
// providers; the mount and repository close when the test ends.
func mountVolumes(t *testing.T, repoDir, mnt string) {
	t.Helper()
	ctx := context.Background()
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{Logger: mountLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(mnt, 0o755)
	srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{Logger: mountLogger(t),
		FSProvider: guest.Provider(mountLogger(t)), VolumeProvider: guest.VolumeProvider(mountLogger(t))})
	if err != nil {
		repo.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(true, 5*time.Second); err != nil {
			t.Errorf("unmount: %v", err)
		}
		mountRequireGone(t, mnt)
		repo.Close()
	})
}

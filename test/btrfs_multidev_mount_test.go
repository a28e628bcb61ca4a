package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBtrfsMultiDeviceLayout: a btrfs of two devices (data raid0,
// metadata raid1) made by mkfs.btrfs on loop devices and filled through
// the kernel, one device a GPT partition of sda, the other the whole of
// sdb. Imported and mounted, fs/btrfs/<label>/ equals the kernel's mount
// of the two devices file by file; sda/p1 says where the filesystem is
// shown; a point holding only sda names the missing device in
// fs/btrfs/ERROR.txt and fails striped reads with EIO, never other bytes.
func TestBtrfsMultiDeviceLayout(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.btrfs", "losetup", "sgdisk", "mount", "umount")
	dir := t.TempDir()
	const devSize = 200 * mib
	dev0, dev1 := filepath.Join(dir, "dev0.img"), filepath.Join(dir, "dev1.img")
	makeImage(t, dev0, devSize)
	makeImage(t, dev1, devSize)
	big := bytes.Repeat([]byte("striped over two devices in 64 KiB units\n"), 600000)
	mkfsBtrfsOn(t, dir, "pool", []byteRange{{dev0, 0, 0}, {dev1, 0, 0}}, []string{"-d", "raid0", "-m", "raid1"}, func(mnt string) {
		makeGuestTree(t, mnt, treeSpec{files: 150, bigDir: 200, depth: 4, bigFile: 3 * mib, links: true, modes: true, sparse: true}, 18)
		if err := os.WriteFile(filepath.Join(mnt, "big.txt"), big, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	// sda: GPT with the first device as p1; sdb: the second, whole.
	sda := filepath.Join(dir, "sda.img")
	makeImage(t, sda, devSize+2*mib)
	sh(t, "sgdisk", "-n", "1:2048:+200M", sda)
	writeAt(t, sda, dev0, mib)

	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	full := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "pool", "--disk", "sda", "--disk", "sdb", sda, dev1))
	half := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "halfpool", "--disk", "sda", sda))
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	fsOf := func(vm, point string, p ...string) string {
		return filepath.Join(append([]string{mnt, vm, point, "fs"}, p...)...)
	}
	if got := listNames(t, fsOf("pool", full)); got != "btrfs,sda,sdb" {
		t.Fatalf("fs/ lists %s", got)
	}
	// The kernel's view, read-only through fresh loop devices.
	kmnt := filepath.Join(dir, "kernel")
	mountBtrfsRanges(t, kmnt, byteRange{dev0, 0, 0}, byteRange{dev1, 0, 0})
	compareTrees(t, walkTree(t, kmnt, nil), walkTree(t, fsOf("pool", full, "btrfs", "pool"), nil), compareOpts{modes: true, links: true})
	if _, err := os.Stat(fsOf("pool", full, "btrfs", fusefs.ErrorFileName)); !os.IsNotExist(err) {
		t.Errorf("complete filesystem has a btrfs/ERROR.txt: %v", err)
	}
	if b, err := os.ReadFile(fsOf("pool", full, "sda", "p1", fusefs.ErrorFileName)); err != nil || !strings.Contains(string(b), "fs/btrfs/") {
		t.Errorf("sda/p1/ERROR.txt %q %v", b, err)
	}

	// The CLI reads the same filesystem with --volume btrfs/<label>, and
	// `cairn partitions` shows it with its devices.
	if ls := mustCairn(t, "--repo", repoDir, "files", "--vm", "pool", "--volume", "btrfs/pool", "/"); !strings.Contains(ls, "big.txt") {
		t.Errorf("files --volume btrfs/pool does not list big.txt:\n%s", ls)
	}
	restored := filepath.Join(dir, "restored.txt")
	mustCairn(t, "--repo", repoDir, "restore-file", "--vm", "pool", "--volume", "btrfs/pool", "/big.txt", restored)
	if got, err := os.ReadFile(restored); err != nil || !bytes.Equal(got, big) {
		t.Errorf("restore-file --volume btrfs/pool /big.txt: %d bytes, %v", len(got), err)
	}
	parts := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "pool", "--json")
	for _, want := range []string{`"disk": "btrfs/pool"`, `"devid1=sda/p1"`, `"devid2=sdb/whole"`, "its files are listed under btrfs/pool"} {
		if !strings.Contains(parts, want) {
			t.Errorf("partitions --json lacks %s:\n%s", want, parts)
		}
	}
	// The text table marks each device, and a device read alone with
	// --disk/--part names the --volume that reads the filesystem.
	if txt := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "pool"); strings.Count(txt, "(device of btrfs/pool)") != 2 {
		t.Errorf("partitions does not mark both devices of btrfs/pool:\n%s", txt)
	}
	if res := runCairn(t, nil, "--repo", repoDir, "files", "--vm", "pool", "--disk", "sdb", "--part", "whole", "/"); res.code == 0 ||
		!strings.Contains(res.stderr, "--volume btrfs/NAME") {
		t.Errorf("files on one device of btrfs/pool: %d %q", res.code, res.stderr)
	}
	res := runCairn(t, nil, "--repo", repoDir, "files", "--vm", "pool", "--volume", "btrfs/nope", "/")
	if res.code == 0 || !strings.Contains(res.stderr, "pool") {
		t.Errorf("unknown btrfs volume: %d %q", res.code, res.stderr)
	}

	// Only sda: the second device is missing.
	if b, err := os.ReadFile(fsOf("halfpool", half, "btrfs", fusefs.ErrorFileName)); err != nil || !strings.Contains(string(b), "1 of 2 devices") {
		t.Errorf("half: btrfs/ERROR.txt %q %v", b, err)
	}
	got, err := os.ReadFile(fsOf("halfpool", half, "btrfs", "pool", "big.txt"))
	if err == nil || bytes.Equal(got, big) {
		t.Errorf("striped file with a device missing: %d bytes, %v; want EIO", len(got), err)
	}
}

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestSUSELayout is a SUSE-style disk: a btrfs root (partition 2 of a
// GPT disk) with subvolumes @home and @var, a read-only snapshot taken
// before a change, and zstd-compressed files, made through a kernel
// mount. Imported and mounted, fs/sda/p2 must equal the kernel's view of
// the same filesystem path by path (content, mode, links, times).
func TestSUSELayout(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs", "sgdisk", "mount")
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "root.btrfs")
	makeImage(t, fsImg, 300*mib)
	sh(t, "mkfs.btrfs", "-q", "-L", "suse-root", fsImg)
	kmnt := filepath.Join(dir, "kernel")
	os.Mkdir(kmnt, 0o755)
	sh(t, "mount", "-o", "loop,compress=zstd", fsImg, kmnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", kmnt).Run()
		}
	}()
	makeGuestTree(t, filepath.Join(kmnt, "etcroot"), treeSpec{files: 400, bigDir: 300, depth: 8, bigFile: 16 * mib, links: true, modes: true, longNames: true, sparse: true}, 41)
	for _, sv := range []string{"@home", "@var"} {
		sh(t, "btrfs", "subvolume", "create", filepath.Join(kmnt, sv))
		makeGuestTree(t, filepath.Join(kmnt, sv, "data"), treeSpec{files: 100, bigDir: 20, depth: 3, bigFile: 2 * mib, links: true, modes: true}, 42)
	}
	os.MkdirAll(filepath.Join(kmnt, ".snapshots", "1"), 0o755)
	sh(t, "btrfs", "subvolume", "snapshot", "-r", kmnt, filepath.Join(kmnt, ".snapshots", "1", "snapshot"))
	os.WriteFile(filepath.Join(kmnt, "etcroot", "etc", "d00", "file-0000.conf"), []byte("after the snapshot\n"), 0o644)
	sh(t, "umount", kmnt)
	mounted = false

	disk := filepath.Join(dir, "sda.img")
	makeImage(t, disk, 302*mib+mib)
	sh(t, "sgdisk", "-n", "1:2048:+1M", "-t", "1:ef02", "-n", "2:0:+300M", disk)
	writeAt(t, disk, fsImg, 2*mib)
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	point := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "suse", "--disk", "sda", disk))

	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	sh(t, "mount", "-o", "loop,ro", fsImg, kmnt)
	defer exec.Command("umount", kmnt).Run()
	root := filepath.Join(mnt, "suse", point, "fs", "sda", "p2")
	if got, want := listNames(t, root), listNames(t, kmnt); got != want {
		t.Fatalf("root lists %s, kernel %s", got, want)
	}
	for _, sub := range []string{"etcroot", "@home", "@var", ".snapshots/1/snapshot/etcroot"} {
		t.Run(strings.ReplaceAll(sub, "/", "_"), func(t *testing.T) {
			compareTrees(t, walkTree(t, filepath.Join(kmnt, sub), nil), walkTree(t, filepath.Join(root, sub), nil),
				compareOpts{modes: true, links: true})
		})
	}
	b, err := os.ReadFile(filepath.Join(root, ".snapshots", "1", "snapshot", "etcroot", "etc", "d00", "file-0000.conf"))
	if err != nil || strings.Contains(string(b), "after the snapshot") {
		t.Errorf("snapshot shows %q %v", b, err)
	}
}

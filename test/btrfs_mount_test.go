package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestSUSELayout is the SUSE-style disk of buildSUSE (btrfs root with
// subvolumes, a read-only snapshot, zstd). Imported and mounted,
// fs/sda/p2 must equal the kernel's view of the same filesystem path by
// path (content, mode, links, times, and getfattr/getfacl of the whole
// filesystem).
func TestSUSELayout(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs", "sgdisk", "mount")
	dir := t.TempDir()
	fx := buildSUSE(t, dir)
	fsImg, disk := fx.fsImg, fx.disk
	kmnt := filepath.Join(dir, "kernel")
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	point := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "suse", "--disk", "sda", disk))

	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	kernelMount(t, fsImg, kmnt, "loop,ro")
	root := filepath.Join(mnt, "suse", point, "fs", "sda", "p2")
	fx.compareWithKernel(t, root, kmnt)
	b, err := os.ReadFile(filepath.Join(root, ".snapshots", "1", "snapshot", suseChanged))
	if err != nil || strings.Contains(string(b), "after the snapshot") {
		t.Errorf("snapshot shows %q %v", b, err)
	}
	// --volume btrfs/NAME is for a btrfs of several devices: asked for
	// this one by its label, cairn says where a one-device btrfs is read.
	if res := runCairn(t, nil, "--repo", repoDir, "files", "--vm", "suse", "--volume", "btrfs/suse-root", "/"); res.code == 0 ||
		!strings.Contains(res.stderr, "a btrfs of one device is read where it lives, with --disk/--part") {
		t.Errorf("files --volume btrfs/suse-root: exit %d %s", res.code, res.stderr)
	}
}

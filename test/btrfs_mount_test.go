package test

import (
	"os"
	"os/exec"
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
	t.Run("xattrs", func(t *testing.T) {
		gotAttr, gotACL := xattrDumps(t, root)
		wantAttr, wantACL := xattrDumps(t, kmnt)
		if gotAttr != wantAttr || !strings.Contains(wantAttr, "user.leaf-attribute-039") {
			t.Errorf("getfattr through the mount differs from the kernel mount:\n%s", firstDiff(gotAttr, wantAttr))
		}
		if gotACL != wantACL {
			t.Errorf("getfacl through the mount differs from the kernel mount:\n%s", firstDiff(gotACL, wantACL))
		}
	})
	b, err := os.ReadFile(filepath.Join(root, ".snapshots", "1", "snapshot", suseChanged))
	if err != nil || strings.Contains(string(b), "after the snapshot") {
		t.Errorf("snapshot shows %q %v", b, err)
	}
}

package test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestMountListsInodeNumbers: every entry of every directory of the mount
// (the root, VM and point directories, disks/, fs/ and the guest
// filesystem's directories) is listed by getdents (ls -i) with the inode
// number stat reports for it, and keeps that number after the kernel
// forgot it (the mount's own entries were listed as 4294967295, and got a
// new number on every lookup after a forget).
func TestMountListsInodeNumbers(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	if err := os.MkdirAll(filepath.Join(stage, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, "sub", "f.txt"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "ext4.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", stage, img, "16M")
	junk := filepath.Join(dir, "junk.img")
	if err := os.WriteFile(junk, []byte("not a filesystem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(junk, 1<<20); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	mustCairn(t, "--repo", repoDir, "import", "--vm", "w", "--disk", "sda", img)
	mustCairn(t, "--repo", repoDir, "import", "--vm", "w", "--disk", "sda", img)
	mustCairn(t, "--repo", repoDir, "import", "--vm", "j", "--disk", "sdb", junk)
	mnt := filepath.Join(dir, "mnt")
	mountTraced(t, repoDir, mnt)

	walk := func() map[string]uint64 {
		inos := map[string]uint64{}
		queue := []string{mnt}
		for len(queue) > 0 {
			d := queue[0]
			queue = queue[1:]
			es, _ := getdentsAll(t, d, 4096)
			for _, e := range es {
				if e.Name == "." || e.Name == ".." {
					continue
				}
				p := filepath.Join(d, e.Name)
				st := lstatIno(t, p)
				if e.Ino != st {
					rel, _ := filepath.Rel(mnt, p)
					t.Errorf("%s: listed with inode %d, stat says %d", rel, e.Ino, st)
				}
				inos[p] = st
				if e.Type == unix.DT_DIR {
					queue = append(queue, p)
				}
			}
		}
		return inos
	}
	first := walk()
	if len(first) < 15 {
		t.Fatalf("walked %d entries, want the whole tree", len(first))
	}
	// The kernel forgets the entries (FORGET), then looks them up again.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	again := walk()
	for p, ino := range first {
		if again[p] != ino {
			rel, _ := filepath.Rel(mnt, p)
			t.Errorf("%s: inode %d after the kernel forgot it, %d before", rel, again[p], ino)
		}
	}
}

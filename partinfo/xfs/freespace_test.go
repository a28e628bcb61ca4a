package xfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// sbFdblocks is the superblock's free block counter as xfs_db prints it.
func sbFdblocks(t *testing.T, img string) int64 {
	t.Helper()
	out, err := exec.Command("xfs_db", "-r", "-c", "sb 0", "-c", "p fdblocks", img).CombinedOutput()
	m := regexp.MustCompile(`fdblocks = (\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("xfs_db: %v\n%s", err, out)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// TestFreeSpaceOfCrashedXFS: a crash-consistent image of a mounted XFS
// (lazy superblock counters, the default) carries the free block count
// of its last clean mount in the superblock; the allocation groups' AGF
// headers (with the log replayed) hold the real one. Used/free come from
// the AGFs, equal to what the kernel writes to the superblock after it
// recovered and cleanly unmounted a copy. (The superblock's stale count
// made `cairn partitions` show a filesystem as empty that was 40 % full.)
func TestFreeSpaceOfCrashedXFS(t *testing.T) {
	testutil.RequireTools(t, "xfs_io", "xfs_db", "cp")
	img := makeImage(t, 320<<20)
	mnt, unmount := mountImage(t, img)
	for i := 0; i < 4; i++ {
		// Direct writes: no speculative preallocation that a clean
		// unmount would give back.
		run(t, "xfs_io", "-f", "-d", "-c", "pwrite -q 0 24m", "-c", "fsync", filepath.Join(mnt, fmt.Sprintf("f%d", i)))
	}
	run(t, "xfs_io", "-x", "-c", "shutdown -f", mnt)
	unmount()
	stale := sbFdblocks(t, img)

	// The truth: the kernel recovers a copy, a clean unmount writes the
	// counters.
	cp := filepath.Join(t.TempDir(), "copy.img")
	run(t, "cp", "--sparse=always", img, cp)
	_, unmount2 := mountImage(t, cp)
	unmount2()
	want := sbFdblocks(t, cp)
	if want == stale {
		t.Fatalf("the fixture's superblock counter is not stale (%d blocks free): the recipe no longer tests this", want)
	}

	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys, err := Open(f, 0, 320<<20)
	if err != nil {
		t.Fatal(err)
	}
	info := fsys.Info()
	if got := info.Free / int64(info.BlockSize); got != want {
		t.Errorf("free blocks %d (superblock says %d), want %d as the kernel counts them after recovery", got, stale, want)
	}
	if info.Used+info.Free != info.Size {
		t.Errorf("used %d + free %d != size %d", info.Used, info.Free, info.Size)
	}
}

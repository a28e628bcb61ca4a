package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// dumpe2fsFree is the superblock's free block count as dumpe2fs prints it.
func dumpe2fsFree(t *testing.T, img string) int64 {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	m := regexp.MustCompile(`(?m)^Free blocks:\s+(\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("dumpe2fs -h: %v\n%s", err, out)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// TestFreeSpaceOfLiveImage: the superblock's free block count of a
// mounted ext4 is written only now and then (the kernel keeps it in
// per-CPU counters), so an image taken from a running guest carries an
// old one; the group descriptors (with the journal replayed) hold the
// real count, and the kernel and e2fsck sum them. Used/free come from
// them, equal to what the kernel writes after it recovered a copy and
// unmounted it. (The stale count made 60 MiB of data look like none.)
func TestFreeSpaceOfLiveImage(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount", "cp", "dumpe2fs", "dd")
	dir := t.TempDir()
	img := filepath.Join(dir, "live.img")
	makeImage(t, img, 200<<20, "mkfs.ext4")
	mnt, unmount := loopMount(t, img, false)
	runCmd(t, "dd", "if=/dev/urandom", "of="+filepath.Join(mnt, "f"), "bs=1M", "count=60", "status=none")
	runCmd(t, "sync")
	live := filepath.Join(dir, "snapshot.img")
	runCmd(t, "cp", "--sparse=always", img, live) // the guest still runs
	unmount()
	stale := dumpe2fsFree(t, live)

	truth := filepath.Join(dir, "truth.img")
	runCmd(t, "cp", "--sparse=always", live, truth)
	_, unmount2 := loopMount(t, truth, false)
	unmount2()
	want := dumpe2fsFree(t, truth)
	if want == stale {
		t.Fatalf("the snapshot's superblock count is not stale (%d free): the recipe no longer tests this", want)
	}
	f := openImage(t, live)
	info := f.Info()
	if got := info.Free / int64(info.BlockSize); got != want {
		t.Errorf("free blocks %d (superblock says %d), want %d as the kernel counts them", got, stale, want)
	}
	if info.Used+info.Free != info.Size {
		t.Errorf("used %d + free %d != size %d", info.Used, info.Free, info.Size)
	}
	_ = os.Remove
}

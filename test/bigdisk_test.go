package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// bigDiskRSSLimit bounds the peak RSS of any cairn process handling the
// 1 PiB disk: a memory bound, generous against the ~20-40 MiB measured,
// and far below the 16-64 GiB that per-block maps of 2^34 blocks need.
const bigDiskRSSLimit = 512 << 20

// runCairnRSS runs cairn and returns its peak RSS in bytes.
func runCairnRSS(t *testing.T, args ...string) (string, int64) {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatalf("cairn %s: %v", strings.Join(args, " "), err)
	}
	w := watchRSS(cmd.Process.Pid)
	err := cmd.Wait()
	peak := w.Peak()
	if err != nil {
		t.Fatalf("cairn %s: %v: %s", strings.Join(args, " "), err, se.String())
	}
	return so.String(), peak
}

// procPeakRSS reads VmHWM (peak RSS) of a running process.
func procPeakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPebibyteDisk imports a 1 PiB sparse disk (data at its start, middle
// and end), imports it again (full, then with a changed area high up),
// exports it and reads it through a mount at high offsets. Memory must
// follow the data, not the disk's size: every process stays under
// bigDiskRSSLimit. tmpfs holds the files (ext4 stops at 16 TiB per file).
func TestPebibyteDisk(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireFUSE(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", dir).Run()
	const size = int64(1) << 50
	src := filepath.Join(dir, "src.img")
	makeImage(t, src, size)
	areas := []int64{0, size / 2, size - 1<<20} // 1 MiB of data each
	for i, off := range areas {
		writeRandom(t, src, off, 1<<20, uint64(i+1))
	}
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	rss := map[string]int64{}
	_, rss["import (first)"] = runCairnRSS(t, "--repo", repo, "import", "--vm", "big", "--disk", "d0", src)
	// A full re-read compared by hash loads the previous point's map.
	writeRandom(t, src, size/4, 1<<20, 9)
	_, rss["import (full, with a base)"] = runCairnRSS(t, "--repo", repo, "import", "--vm", "big", "--disk", "d0", src)
	high := size - 64<<20
	writeRandom(t, src, high, 64<<10, 10)
	_, rss["import (changed area)"] = runCairnRSS(t, "--repo", repo, "import", "--vm", "big", "--disk", "d0",
		"--changed", fmt.Sprintf("%d:%d", high, 64<<10), src)

	out := filepath.Join(dir, "out.img")
	_, rss["export"] = runCairnRSS(t, "--repo", repo, "export", "--vm", "big", "--disk", "d0", out)
	for _, off := range append(areas, size/4, high) {
		compareRange(t, src, out, off, 1<<20)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != size {
		t.Fatalf("exported image: %v, size %v", err, fi)
	}

	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	cmd := mountStartCLI(t, buildCairn(t), repo, mnt)
	img := filepath.Join(mnt, "big", "latest", "disks", "d0.img")
	for _, off := range append(areas, size/4, high, size-4096) {
		compareRange(t, src, img, off, 1<<20)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := unix.Seek(int(f.Fd()), 1<<20, unix.SEEK_DATA); err != nil || data != size/4 {
		t.Errorf("SEEK_DATA from 1 MiB = %d, %v; want %d", data, err, size/4)
	}
	if hole, err := unix.Seek(int(f.Fd()), size/2, unix.SEEK_HOLE); err != nil || hole != size/2+1<<20 {
		t.Errorf("SEEK_HOLE from the middle = %d, %v; want %d", hole, err, size/2+1<<20)
	}
	f.Close()
	// The guest view probes the disk (partition tables at both ends).
	if _, err := os.ReadDir(filepath.Join(mnt, "big", "latest", "fs")); err != nil {
		t.Errorf("list fs/ of the 1 PiB disk: %v", err)
	}
	if _, err := os.ReadDir(filepath.Join(mnt, "big", "latest", "fs", "d0")); err != nil {
		t.Logf("list fs/d0 of the 1 PiB disk (random data, no partition table): %v", err)
	}
	rss["mount"] = procPeakRSS(t, cmd.Process.Pid)
	if err := fusefs.Unmount(mnt, false); err != nil {
		t.Fatal(err)
	}
	mountWaitExit(t, cmd)

	for what, n := range rss {
		t.Logf("peak RSS of cairn %s with a 1 PiB disk: %d MiB", what, n>>20)
		if n > bigDiskRSSLimit {
			t.Errorf("cairn %s peaked at %d MiB RSS with a 1 PiB disk holding 5 MiB (limit %d MiB)", what, n>>20, bigDiskRSSLimit>>20)
		}
	}
}

// compareRange checks that n bytes at off are the same in two files.
func compareRange(t *testing.T, a, b string, off, n int64) {
	t.Helper()
	read := func(path string) []byte {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, n)
		k, err := f.ReadAt(buf, off)
		if err != nil && k != int(n) && int64(k) != min(n, fileSize(t, path)-off) {
			t.Fatalf("read %s at %d: %v", path, off, err)
		}
		return buf[:k]
	}
	if !bytes.Equal(read(a), read(b)) {
		t.Errorf("%s and %s differ in [%d,+%d)", a, b, off, n)
	}
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

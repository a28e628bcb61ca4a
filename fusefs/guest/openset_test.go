package guest_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestOpenVolumesBounded browses the filesystems of more disks than the
// mount's bound on open guest filesystems (one small ext4 image on five
// disks of a point): the count of open ones stays at the bound, and the
// files of an evicted volume read the same bytes with the same inode
// numbers, and a file kept open reads on across the eviction pressure.
func TestOpenVolumesBounded(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4")
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	files := map[string][]byte{}
	rng := rand.New(rand.NewPCG(3, 5))
	for name, size := range map[string]int{"a.txt": 100, "sub/b.bin": 200 << 10, "sub/c.txt": 10, "big.bin": 6 << 20} {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		files[name] = b
		os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "ext4.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	const disks, bound = 5, 2
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{Time: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range disks {
		w, err := s.AddDisk(ctx, fmt.Sprintf("d%d", i), int64(len(raw)), blockmap.DiskOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt(raw, 0); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}

	guests := guest.New(nil, bound)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{FSProvider: guests.FSProvider(), VolumeProvider: guests.VolumeProvider()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })
	vol := func(i int) string { return filepath.Join(mnt, "vm", p.ID, "fs", fmt.Sprintf("d%d", i), "whole") }
	ino := func(path string) uint64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	check := func(path string, want []byte) {
		t.Helper()
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want the image's %d bytes", path, len(got), err, len(want))
		}
	}

	// d0: list sub/ (the inode numbers the kernel gets), stat big.bin
	// (a node the kernel holds) but read only a.txt.
	listed := map[string]uint64{}
	ents, err := os.ReadDir(filepath.Join(vol(0), "sub"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, _ := e.Info()
		listed[e.Name()] = info.Sys().(*syscall.Stat_t).Ino
	}
	bigIno := ino(filepath.Join(vol(0), "big.bin"))
	check(filepath.Join(vol(0), "a.txt"), files["a.txt"])

	// A file of d1 stays open while the other volumes are browsed.
	f, err := os.Open(filepath.Join(vol(1), "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, files["big.bin"][:len(head)]) {
		t.Fatalf("open big.bin of d1, first read: %v", err)
	}

	for i := 2; i < disks; i++ {
		check(filepath.Join(vol(i), "sub", "b.bin"), files["sub/b.bin"])
		if n := guests.OpenVolumes(); n > bound {
			t.Errorf("after browsing d%d: %d guest filesystems open, want at most %d", i, n, bound)
		}
	}
	// The open file reads on, wherever its volume went meanwhile.
	tail := make([]byte, 64<<10)
	off := int64(len(files["big.bin"]) - len(tail))
	if _, err := f.ReadAt(tail, off); err != nil || !bytes.Equal(tail, files["big.bin"][off:]) {
		t.Errorf("open big.bin of d1 after browsing d2..d4: %v or other bytes", err)
	}

	// d0 was evicted: its files read the same bytes, its entries keep
	// their inode numbers (a lookup after the reopen gives the listed one).
	check(filepath.Join(vol(0), "big.bin"), files["big.bin"])
	if got := ino(filepath.Join(vol(0), "big.bin")); got != bigIno {
		t.Errorf("big.bin of d0 after eviction: inode %d, want %d", got, bigIno)
	}
	for name, want := range listed {
		if got := ino(filepath.Join(vol(0), "sub", name)); got != want {
			t.Errorf("sub/%s of d0 looked up after eviction: inode %d, listed as %d before", name, got, want)
		}
	}
	check(filepath.Join(vol(0), "sub", "b.bin"), files["sub/b.bin"])
	if n := guests.OpenVolumes(); n != bound {
		t.Errorf("at the end: %d guest filesystems open, want %d", n, bound)
	}

	// The bound in bytes: what the open volumes' caches hold together.
	// Each browsed volume holds more than 64 KiB (a chunk of its
	// metadata), so with a bound of 64 KiB only the most recently used
	// one stays open, whatever the count bound allows; files read on.
	guests.SetMaxBytes(64 << 10)
	if n := guests.OpenVolumes(); n != 1 {
		t.Errorf("after lowering the byte bound: %d guest filesystems open, want 1", n)
	}
	for i := range disks {
		check(filepath.Join(vol(i), "sub", "c.txt"), files["sub/c.txt"])
		if n := guests.OpenVolumes(); n != 1 {
			t.Errorf("after browsing d%d under a byte bound of 64 KiB: %d guest filesystems open, want 1", i, n)
		}
	}
	if held := guests.HeldBytes(); held <= 0 {
		t.Errorf("the open volume holds %d bytes", held)
	}
}

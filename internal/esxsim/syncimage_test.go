package esxsim_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

func TestSyncFromImageWritesOnlyDifferingBlocks(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib})
	vm := vmObject(t, sim, c, "vm1")
	enableCBT(t, vm)
	g, _ := sim.Guest("vm1")
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	put := func(off int64, s string) {
		if _, err := f.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
	put(0, "superblock")
	put(5*mib+10, "file data")
	if err := f.Truncate(32 * mib); err != nil {
		t.Fatal(err)
	}
	first, err := g.SyncFromImage(0, img)
	if err != nil {
		t.Fatal(err)
	}
	sameBlocks(t, "first sync", extentBlocks(first...), map[int64]bool{0: true, 5 * mib / esxsim.BlockSize: true})
	s1 := snapshot(t, vm, "s1", false)
	d1 := snapshotDisks(t, c, s1)[0]

	put(5*mib+10, "FILE DATA")
	put(9*mib, "new file")
	second, err := g.SyncFromImage(0, img)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{5 * mib / esxsim.BlockSize: true, 9 * mib / esxsim.BlockSize: true}
	sameBlocks(t, "second sync", extentBlocks(second...), want)
	s2 := snapshot(t, vm, "s2", false)
	d2 := snapshotDisks(t, c, s2)[0]
	incr, _ := queryAll(t, vm, s2, d2.Key, d2.CapacityInBytes, flatBacking(t, d1).ChangeId)
	sameBlocks(t, "CBT after the second sync", blocksOf(incr), want)
	if again, err := g.SyncFromImage(0, img); err != nil || len(again) != 0 {
		t.Errorf("syncing the same image again wrote %v, %v", again, err)
	}
	big := filepath.Join(t.TempDir(), "big.img")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 65*mib); err != nil {
		t.Fatal(err)
	}
	if _, err := g.SyncFromImage(0, big); err == nil {
		t.Error("syncing an image larger than the disk succeeded")
	}
}

package blockmap

import (
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// allocated is the bytes a file holds on disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestForgetCountsDeletedImages: forgetting the only point of a VM deletes
// its delta image, and the bytes that image held are counted as released
// (it used to say "0 B released, 1 delta images deleted").
func TestForgetCountsDeletedImages(t *testing.T) {
	r := newTestRepo(t)
	rng := rand.New(rand.NewPCG(7, 7))
	d := &modelDisk{name: "disk0", data: make([]byte, 16*testBS), changed: map[int64]bool{}}
	for i := range d.data {
		d.data[i] = byte(rng.Uint32())
	}
	p := backup(t, r, "vm1", []*modelDisk{d}, true, time.Unix(1000, 0))
	img := r.imagePath(p.Disks[0].ID, p.Gen)
	held := allocated(t, img)
	if held < 16*testBS {
		t.Fatalf("image %s holds %d bytes, want at least %d", img, held, 16*testBS)
	}
	res, err := r.Forget(context.Background(), "vm1", []string{"latest"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.ImagesDeleted != 1 {
		t.Fatalf("images deleted %d, want 1", res.ImagesDeleted)
	}
	if res.BytesReleased != held {
		t.Fatalf("bytes released %d, want the deleted image's %d", res.BytesReleased, held)
	}
}

// TestSparseReserveRefilled: a copy of the repository by a tool that makes
// zeros holes (rsync -S, cp --sparse=always) leaves a reserve of the right
// size that holds no space; the next writer allocates it again, so that a
// full filesystem still has room for forget and prune.
func TestSparseReserveRefilled(t *testing.T) {
	r := newTestRepo(t)
	path := r.reservePath()
	want := r.reserveSize()
	if got := allocated(t, path); got < want {
		t.Fatalf("new reserve holds %d bytes, want %d", got, want)
	}
	// What rsync -S leaves: the same size, all holes.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, FileMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, want); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(context.Background(), r.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &modelDisk{name: "disk0", data: make([]byte, 2*testBS), changed: map[int64]bool{}}
	d.data[5] = 1
	backup(t, r2, "vm1", []*modelDisk{d}, true, time.Unix(1000, 0))
	if got := allocated(t, path); got < want {
		t.Fatalf("after a writer the reserve holds %d bytes, want %d", got, want)
	}
}

// TestCheckSkipsRunningWriter: verify runs beside backups, so a writer at
// work (its VM lock held) is not reported as the "open session" and
// "orphaned delta image" of a dead one; once its holder is gone without a
// commit (a killed writer), both are reported.
func TestCheckSkipsRunningWriter(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	d := &modelDisk{name: "disk0", data: make([]byte, 2*testBS), changed: map[int64]bool{}}
	d.data[0] = 1
	backup(t, r, "vm1", []*modelDisk{d}, true, time.Unix(1000, 0))
	s, err := r.BeginPoint(ctx, "vm1", PointOptions{Purpose: "running"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "disk0", 2*testBS, DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, testBS)
	block[1] = 2
	if err := w.WriteBlock(0, block); err != nil {
		t.Fatal(err)
	}
	if probs, err := r.Check(ctx); err != nil || len(probs) != 0 {
		t.Fatalf("check beside a running writer: %v %q, want no problem", err, probs)
	}
	s.lock.Release() // the writer dies: the kernel drops its flock
	probs, err := r.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 2 || !strings.HasPrefix(probs[0], "open session: VM vm1") || !strings.HasPrefix(probs[1], "orphaned delta image") {
		t.Fatalf("check after the writer died: %q, want its open session and orphaned image", probs)
	}
}

package blockmap

import (
	"context"
	"math/rand/v2"
	"os"
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

package remote

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestReadReusedBuffers reads a remote disk whose blocks go through the
// reader's reused buffers: every blob of a ranged GET is decrypted in one
// scratch buffer, block ids come from reused hashers, and blocks that
// share a blob are opened once. The disk mixes distinct random blocks,
// text blocks (compressed), a block repeated next to itself and far
// from itself, and a hole. Whole reads (one GET run for all blocks), block
// by block reads with a fresh reader, and a second read from the cache
// must all equal the local point: a block handed out as a view of the
// scratch buffer, or a blob reused for the wrong block, would show the
// bytes of a later block.
func TestReadReusedBuffers(t *testing.T) {
	e := newEnv(t, 0)
	repo := newRepoAt(t, t.TempDir()+"/repo")
	bs := int64(repo.BlockSize())
	rnd := rand.New(rand.NewPCG(11, 12))
	a, b, c := randBytes(rnd, int(bs)), randBytes(rnd, int(bs)), randBytes(rnd, int(bs))
	txt := textBytes(int(3 * bs))
	// Blocks: a b a a c [hole] txt txt txt b a
	layout := [][]byte{a, b, a, a, c, nil, txt[:bs], txt[bs : 2*bs], txt[2*bs:], b, a}
	data := map[int64][]byte{}
	for i, blk := range layout {
		if blk != nil {
			data[int64(i)*bs] = blk
		}
	}
	size := int64(len(layout)) * bs
	p := writePoint(t, repo, "reuse", time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC), []diskSpec{{name: "d0", size: size, data: data}})
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	lr, err := repo.OpenDisk(ctx(t), p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	want := readAll(t, lr, size)
	for i, blk := range layout {
		if blk != nil && !bytes.Equal(want[int64(i)*bs:int64(i+1)*bs], blk) {
			t.Fatalf("local block %d is not what was written", i)
		}
	}
	check := func(what string, got []byte, off int64) {
		t.Helper()
		for i := int64(0); i < int64(len(got)); i += bs {
			n := min(bs, int64(len(got))-i)
			if !bytes.Equal(got[i:i+n], want[off+i:off+i+n]) {
				t.Fatalf("%s: block %d differs from the local point", what, (off+i)/bs)
			}
		}
	}

	// One read of the whole disk: one GET run, every blob through one
	// scratch buffer; then the same reader again, from its cache.
	dr, err := r.OpenDisk(ctx(t), "reuse", p.ID, "d0", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	r.blobGets.Store(0)
	check("whole read", readAll(t, dr, size), 0)
	if g := r.blobGets.Load(); g != 1 {
		t.Errorf("whole read made %d ranged GETs, want 1 (one run through one buffer)", g)
	}
	check("whole read from the cache", readAll(t, dr, size), 0)

	// Block by block, each through a fresh reader: reused GET buffers
	// whose tails hold the previous read's blob.
	buf := make([]byte, bs)
	for i := range layout {
		dr, err := r.OpenDisk(ctx(t), "reuse", p.ID, "d0", 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dr.ReadAt(buf, int64(i)*bs); err != nil {
			t.Fatalf("read block %d: %v", i, err)
		}
		check("block read", buf, int64(i)*bs)
	}
}

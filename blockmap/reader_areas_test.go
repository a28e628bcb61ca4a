package blockmap

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestOpenDiskAreas: an AreaReader of a point after several generations
// reads the same bytes as a whole DiskReader inside its areas, lists the
// same data extents there, and refuses reads outside them.
func TestOpenDiskAreas(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	rng := rand.New(rand.NewPCG(7, 7))
	d := &modelDisk{name: "d0", data: make([]byte, 40*testBS+333), changed: map[int64]bool{}}
	for i := range d.data[:25*testBS] {
		d.data[i] = byte(rng.Uint32())
	}
	backup(t, r, "vm", []*modelDisk{d}, true, time.Time{})
	for i := 0; i < 4; i++ {
		d.mutate(rng)
		backup(t, r, "vm", []*modelDisk{d}, false, time.Time{})
	}
	pts, err := r.Points(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	areas := []Extent{{Offset: 3*testBS + 10, Length: 100}, {Offset: 20 * testBS, Length: 8 * testBS}, {Offset: 21 * testBS, Length: testBS}, {Offset: 40 * testBS, Length: 333}}
	for _, p := range pts {
		whole, err := r.OpenDisk(ctx, p, "d0")
		if err != nil {
			t.Fatal(err)
		}
		ar, err := r.OpenDiskAreas(ctx, p, "d0", areas)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []Extent{{3 * testBS, testBS}, {20 * testBS, 8 * testBS}, {40 * testBS, 333}} {
			want, got := make([]byte, a.Length), make([]byte, a.Length)
			if _, err := whole.ReadAt(want, a.Offset); err != nil {
				t.Fatal(err)
			}
			if n, err := ar.ReadAt(got, a.Offset); err != nil || n != len(got) || !bytes.Equal(got, want) {
				t.Errorf("point %d: area %v: %d bytes, %v, equal %v", p.Gen, a, n, err, bytes.Equal(got, want))
			}
		}
		var wantData []Extent
		for _, e := range whole.DataExtents() {
			for _, b := range []Extent{{3 * testBS, testBS}, {20 * testBS, 8 * testBS}, {40 * testBS, 333}} {
				lo, hi := max(e.Offset, b.Offset), min(e.Offset+e.Length, b.Offset+b.Length)
				if lo < hi {
					wantData = appendMerged(wantData, Extent{lo, hi - lo})
				}
			}
		}
		if got := ar.DataExtents(); !slices.Equal(got, wantData) {
			t.Errorf("point %d: data extents %v, want %v", p.Gen, got, wantData)
		}
		for _, off := range []int64{0, 4 * testBS, 28*testBS - 1, 39 * testBS} {
			if _, err := ar.ReadAt(make([]byte, 2), off); !errors.Is(err, ErrOutsideAreas) {
				t.Errorf("point %d: read at %d outside the areas: %v", p.Gen, off, err)
			}
		}
		whole.Close()
		ar.Close()
	}
}

func appendMerged(out []Extent, e Extent) []Extent {
	if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == e.Offset {
		out[n-1].Length += e.Length
		return out
	}
	return append(out, e)
}

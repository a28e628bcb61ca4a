package blockmap

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// TestChangedAreasBase backs up an incremental that names its changed
// areas (so only those blocks' previous versions are loaded) and writes
// inside and outside them: an unchanged block inside is not stored again,
// a block zeroed inside is recorded as zero, a changed block outside is
// stored, a zeroed block outside is recorded as zero, and the point reads
// back exactly.
func TestChangedAreasBase(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	d := &modelDisk{name: "d0", data: make([]byte, 64*testBS+100), changed: map[int64]bool{}}
	for i := range d.data[:40*testBS] {
		d.data[i] = byte(i%253 + 1)
	}
	backup(t, r, "vm", []*modelDisk{d}, true, time.Time{})

	s, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changed := []Extent{{Offset: 2 * testBS, Length: 3 * testBS}, {Offset: 10*testBS + 5, Length: 1}}
	w, err := s.AddDisk(ctx, "d0", int64(len(d.data)), DiskOptions{Changed: changed})
	if err != nil {
		t.Fatal(err)
	}
	if w.baseSparse == nil {
		t.Fatal("a small change list did not load the sparse base")
	}
	block := func(b int64) []byte { return d.data[b*testBS : (b+1)*testBS] }
	// inside: block 2 unchanged, block 3 zeroed, block 4 changed, block 10 unchanged
	clear(block(3))
	block(4)[7] ^= 0xFF
	for _, b := range []int64{2, 3, 4, 10} {
		if err := w.WriteBlock(b, block(b)); err != nil {
			t.Fatal(err)
		}
	}
	// outside: block 20 changed, block 21 zeroed, block 50 (a hole) still zero
	block(20)[0] ^= 0xFF
	clear(block(21))
	if err := w.WriteBlocks(20, d.data[20*testBS:22*testBS]); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBlock(50, block(50)); err != nil {
		t.Fatal(err)
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, p, "d0"); !bytes.Equal(got, d.data) {
		t.Fatal("incremental with changed areas reads back wrong")
	}
	di := p.Disks[0]
	if di.StoredBytes != 2*testBS || di.ChangedBlocks != 2 {
		t.Fatalf("stored %d bytes in %d blocks, want blocks 4 and 20 only (%d bytes)", di.StoredBytes, di.ChangedBlocks, 2*testBS)
	}
	if di.Full {
		t.Fatal("incremental recorded as full")
	}
	if problems, err := r.Check(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("Check = %v, %v", problems, err)
	}
}

func TestCoveredBlocks(t *testing.T) {
	got, n := coveredBlocks([]Extent{{Offset: 5 * testBS, Length: 1}, {Offset: 0, Length: 2*testBS + 1}, {Offset: 2 * testBS, Length: testBS}, {Offset: 99 * testBS, Length: 5 * testBS}, {Offset: 3, Length: 0}}, testBS, 100)
	want := [][2]int64{{0, 3}, {5, 6}, {99, 100}}
	if n != 5 || len(got) != len(want) {
		t.Fatalf("coveredBlocks = %v (%d blocks), want %v (5)", got, n, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("coveredBlocks = %v, want %v", got, want)
		}
	}
}

func TestSplitRanges(t *testing.T) {
	for _, tc := range []struct {
		rs       [][2]int64
		n        int
		min      int64
		wantLens []int64
	}{
		{nil, 2, 256, []int64{0}},
		{[][2]int64{{0, 100}}, 2, 256, []int64{100}},
		{[][2]int64{{0, 600}}, 2, 256, []int64{300, 300}},
		{[][2]int64{{0, 10}, {20, 610}, {700, 701}}, 2, 256, []int64{301, 300}},
		{[][2]int64{{0, 1000}}, 3, 1, []int64{334, 334, 332}},
	} {
		parts := splitRanges(tc.rs, tc.n, tc.min)
		var lens []int64
		var all [][2]int64
		for _, p := range parts {
			var l int64
			for _, r := range p {
				l += r[1] - r[0]
				if k := len(all); k > 0 && all[k-1][1] == r[0] {
					all[k-1][1] = r[1]
				} else {
					all = append(all, r)
				}
			}
			lens = append(lens, l)
		}
		if fmt.Sprint(lens) != fmt.Sprint(tc.wantLens) {
			t.Errorf("splitRanges(%v, %d, %d): part sizes %v, want %v", tc.rs, tc.n, tc.min, lens, tc.wantLens)
		}
		if len(tc.rs) > 0 && fmt.Sprint(all) != fmt.Sprint(tc.rs) {
			t.Errorf("splitRanges(%v): parts %v do not cover the ranges exactly", tc.rs, parts)
		}
	}
}

// TestSparseBaseInParts: a change list large enough to be looked up by
// several iterators at once (more than 256 blocks per part) still finds
// every block's previous version: rewritten blocks with the same bytes
// are not stored again, changed ones are, and all read back.
func TestSparseBaseInParts(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	const nblocks, covered = 4160, 520 // covered*sparseBaseLimit == nblocks: still sparse
	content := func(b int64, gen byte) []byte {
		buf := make([]byte, testBS)
		for i := range buf {
			buf[i] = byte(int64(i)*7+b) ^ gen
		}
		return buf
	}
	s, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "d0", nblocks*testBS, DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < covered; b++ {
		if err := w.WriteBlock(b, content(b, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s, err = r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err = s.AddDisk(ctx, "d0", nblocks*testBS, DiskOptions{Changed: []Extent{{Offset: 0, Length: covered * testBS}}})
	if err != nil {
		t.Fatal(err)
	}
	if w.baseSparse == nil || len(w.baseSparse) != covered {
		t.Fatalf("sparse base holds %d blocks, want %d", len(w.baseSparse), covered)
	}
	for b := int64(0); b < covered; b++ {
		gen := byte(1)
		if b%2 == 1 {
			gen = 2
		}
		if err := w.WriteBlock(b, content(b, gen)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Disks[0].ChangedBlocks; got != covered/2 {
		t.Errorf("stored %d changed blocks, want %d (every odd block)", got, covered/2)
	}
	dr, err := r.OpenDisk(ctx, p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	buf := make([]byte, testBS)
	for _, b := range []int64{0, 1, 255, 256, 257, 300, 518, 519} {
		gen := byte(1 + b%2)
		if _, err := dr.ReadAt(buf, b*testBS); err != nil || !bytes.Equal(buf, content(b, gen)) {
			t.Fatalf("block %d reads back wrong (%v)", b, err)
		}
	}
}

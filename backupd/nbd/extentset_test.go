package nbd

import "testing"

func TestExtentSet(t *testing.T) {
	// Under the cap: exact, touching extents with the same flags merged.
	s := extentSet{max: 4}
	for _, e := range []Extent{{0, 10, 0}, {10, 5, 0}, {20, 1, StateZero}, {21, 1, StateZero}, {30, 3, 0}} {
		s.add(e)
	}
	want := []Extent{{0, 15, 0}, {20, 2, StateZero}, {30, 3, 0}}
	if len(s.list) != len(want) || s.granule != 0 {
		t.Fatalf("under the cap: %v (granule %d), want %v", s.list, s.granule, want)
	}
	for i := range want {
		if s.list[i] != want[i] {
			t.Fatalf("under the cap: %v, want %v", s.list, want)
		}
	}

	// Over the cap: every byte still covered, at most max extents, flags
	// kept only where every merged part had them.
	s = extentSet{max: 8}
	var bytes []int64
	for off := int64(0); off < 1<<20; off += 2 {
		flags := uint32(StateZero)
		if off%1000 == 0 {
			flags = 0
		}
		s.add(Extent{Offset: off, Length: 1, Flags: flags})
		bytes = append(bytes, off)
	}
	if len(s.list) > 8 || s.granule == 0 {
		t.Fatalf("over the cap: %d extents, granule %d", len(s.list), s.granule)
	}
	for i, e := range s.list {
		if i > 0 && e.Offset < s.list[i-1].End() {
			t.Fatalf("extents overlap or are out of order: %v", s.list)
		}
		if e.Offset%s.granule != 0 || e.Length%s.granule != 0 {
			t.Errorf("extent %v not in whole granules of %d", e, s.granule)
		}
		if e.Zero() {
			t.Errorf("extent %v merged a non-zero part but kept StateZero", e)
		}
	}
	k := 0
	for _, b := range bytes {
		for k < len(s.list) && s.list[k].End() <= b {
			k++
		}
		if k == len(s.list) || s.list[k].Offset > b {
			t.Fatalf("byte %d lost by widening: %v", b, s.list)
		}
	}
	if got := clip(s.list, 1000); got[len(got)-1].End() != 1000 {
		t.Errorf("clip to 1000: %v", got)
	}
}

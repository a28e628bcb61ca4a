package blockmap

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"
)

// TestBaseDiff: the areas a new generation's base may differ from an
// older point in are the blocks written after that point (up to the
// base); none for the base itself; no answer (ok false) for a disk that
// is not shared.
func TestBaseDiff(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	const size = 4 * testBS
	commit := func(i int, blocks ...int64) Point {
		t.Helper()
		s, err := r.BeginPoint(ctx, "vm", PointOptions{Time: time.Unix(int64(1000+i), 0)})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddDisk(ctx, "d0", size, DiskOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			if err := w.WriteBlock(b, bytes.Repeat([]byte{byte(i + 1)}, testBS)); err != nil {
				t.Fatal(err)
			}
		}
		p, err := s.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := commit(0, 0, 1, 2, 3)
	p2 := commit(1, 1)
	p3 := commit(2, 3)
	s, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort(ctx)
	ext := func(b, n int64) Extent { return Extent{Offset: b * testBS, Length: n * testBS} }
	for _, tc := range []struct {
		p    Point
		disk string
		want []Extent
		ok   bool
	}{
		{p1, "d0", []Extent{ext(1, 1), ext(3, 1)}, true},
		{p2, "d0", []Extent{ext(3, 1)}, true},
		{p3, "d0", nil, true},
		{p1, "other", nil, false},
	} {
		got, ok, err := s.BaseDiff(ctx, tc.p, tc.disk)
		if err != nil || ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("BaseDiff(gen %d, %s) = %v, %v, %v; want %v, %v", tc.p.Gen, tc.disk, got, ok, err, tc.want, tc.ok)
		}
	}
}

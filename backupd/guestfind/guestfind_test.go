package guestfind

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

func TestGenMapAt(t *testing.T) {
	m := &genMap{first: []int64{0, 4, 10}, n: []int64{2, 3, 1}, gen: []uint32{1, 3, 2}}
	for b, want := range map[int64]uint32{0: 1, 1: 1, 2: 0, 3: 0, 4: 3, 6: 3, 7: 0, 9: 0, 10: 2, 11: 0, -1: 0} {
		if got := m.at(b); got != want {
			t.Errorf("at(%d) = %d, want %d", b, got, want)
		}
	}
}

// TestSameBytes: a point's answer is reused only when every block its
// work read has the same generation, on the same disks.
func TestSameBytes(t *testing.T) {
	a := []*genMap{{id: 1, size: 100, first: []int64{0, 5}, n: []int64{3, 1}, gen: []uint32{1, 1}}}
	changedUnread := []*genMap{{id: 1, size: 100, first: []int64{0, 5, 9}, n: []int64{3, 1, 1}, gen: []uint32{1, 1, 2}}}
	changedRead := []*genMap{{id: 1, size: 100, first: []int64{0, 2, 5}, n: []int64{2, 1, 1}, gen: []uint32{1, 2, 1}}}
	otherDisk := []*genMap{{id: 2, size: 100, first: []int64{0, 5}, n: []int64{3, 1}, gen: []uint32{1, 1}}}
	grown := []*genMap{{id: 1, size: 200, first: []int64{0, 5}, n: []int64{3, 1}, gen: []uint32{1, 1}}}
	set := newReadSet(1)
	set.add(0, 1, 2) // blocks 1 and 2
	set.add(0, 7, 7) // a hole in both
	names := []string{"sda"}
	for _, tc := range []struct {
		name  string
		b     []*genMap
		bn    []string
		set   *readSet
		reuse bool
	}{
		{"unchanged", a, names, set, true},
		{"a block nobody read changed", changedUnread, names, set, true},
		{"a block that was read changed", changedRead, names, set, false},
		{"another disk id", otherDisk, names, set, false},
		{"the disk grew", grown, names, set, false},
		{"another disk name", a, []string{"sdb"}, set, false},
		{"a disk more", append(a, a[0]), []string{"sda", "sdb"}, set, false},
		{"nothing recorded", a, names, nil, false},
	} {
		if got := sameBytes(tc.set, names, a, tc.b, tc.bn); got != tc.reuse {
			t.Errorf("%s: sameBytes = %v, want %v", tc.name, got, tc.reuse)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{"": ".", "/": ".", "/etc/hosts": "etc/hosts", "etc//hosts/": "etc/hosts", "/a/../b": "b"} {
		if got, err := CleanPath(in); err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestSelectorMatch(t *testing.T) {
	p1 := FS{Name: "sda/p1", Disk: "sda", Part: "1"}
	lv := FS{Name: "lvm/vg/root", Volume: "lvm/vg/root"}
	for _, tc := range []struct {
		sel  Selector
		f    FS
		want bool
	}{
		{Selector{}, p1, true},
		{Selector{}, lv, true},
		{Selector{Disk: "sda"}, p1, true},
		{Selector{Disk: "sda", Part: "p1"}, p1, true},
		{Selector{Disk: "sda", Part: "2"}, p1, false},
		{Selector{Disk: "sdb"}, p1, false},
		{Selector{Disk: "sda"}, lv, false},
		{Selector{Volume: "/lvm/vg/root/"}, lv, true},
		{Selector{Volume: "lvm/vg/root"}, p1, false},
	} {
		if got := tc.sel.match(tc.f); got != tc.want {
			t.Errorf("%+v match %s = %v, want %v", tc.sel, tc.f.Name, got, tc.want)
		}
	}
}

// TestBuildRuns: equal states in consecutive points are one run; a
// version met again keeps its number; size and mtime equal but other
// bytes is another version.
func TestBuildRuns(t *testing.T) {
	var pts []blockmap.Point
	for i := range 7 {
		pts = append(pts, blockmap.Point{ID: fmt.Sprint("P", i+1)})
	}
	mt := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &Entry{Mode: 0o644, Size: 3, Mtime: mt, SHA256: "aa"}
	b := &Entry{Mode: 0o644, Size: 3, Mtime: mt, SHA256: "bb"}
	aOtherInode := *a
	aOtherInode.Ino = 99
	bad := &PointError{Point: "P5", FS: "sda/p1", Err: errors.New("boom")}
	st := func(e *Entry) *state { return &state{fs: FS{Name: "sda/p1"}, entry: e} }
	fh := buildRuns(pts, []*state{st(a), st(&aOtherInode), st(b), nil, {fs: FS{Name: "sda/p1"}, err: bad}, st(a), st(a)})
	type run struct {
		from, to string
		version  int
		err      bool
	}
	var got []run
	for _, r := range fh.Runs {
		got = append(got, run{r.Points[0].ID, r.Points[len(r.Points)-1].ID, r.Version, r.Err != nil})
	}
	want := []run{{"P1", "P2", 1, false}, {"P3", "P3", 2, false}, {"P4", "P4", 0, false}, {"P5", "P5", 0, true}, {"P6", "P7", 1, false}}
	if !reflect.DeepEqual(got, want) || fh.Versions != 2 || fh.FS.Name != "sda/p1" {
		t.Errorf("runs %+v (versions %d), want %+v (2)", got, fh.Versions, want)
	}
}

// TestReadSetRanges: a sequential read is one range, whatever its length.
func TestReadSetRanges(t *testing.T) {
	s := newReadSet(2)
	for b := int64(100); b < 100000; b += 4 {
		s.add(0, b, b+3)
	}
	s.add(0, 5, 5)
	s.add(0, 6, 8)
	s.add(0, 4, 4)
	s.add(1, 7, 7)
	want := [][]blockRange{{{100, 99999}, {4, 8}}, {{7, 7}}}
	if !reflect.DeepEqual(s.ranges, want) {
		t.Errorf("ranges %v, want %v", s.ranges, want)
	}
}

package blockmap

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// writeDisk backs up one disk in a session: sparse leaves zero blocks
// unwritten (a full backup's caller may skip them), otherwise every block
// is written, zeros included.
func writeDisk(t *testing.T, s *Session, name string, data []byte, sparse bool) {
	t.Helper()
	w, err := s.AddDisk(context.Background(), name, int64(len(data)), DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b*testBS < int64(len(data)); b++ {
		blk := data[b*testBS : min((b+1)*testBS, int64(len(data)))]
		if sparse && isZero(blk) {
			continue
		}
		if err := w.WriteBlock(b, blk); err != nil {
			t.Fatal(err)
		}
	}
}

// pointOf commits a point holding the given disks (name -> bytes).
func pointOf(t *testing.T, r *Repo, vm string, sparse bool, disks ...any) Point {
	t.Helper()
	ctx := context.Background()
	s, err := r.BeginPoint(ctx, vm, PointOptions{Purpose: "lineage test"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(disks); i += 2 {
		writeDisk(t, s, disks[i].(string), disks[i+1].([]byte), sparse)
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkPoint reads the disk of the point through the reader and export and
// compares it with want; verify and check must pass.
func checkPoint(t *testing.T, r *Repo, p Point, disk string, want []byte, what string) {
	t.Helper()
	if got := readAll(t, r, p, disk); !bytes.Equal(got, want) {
		t.Fatalf("%s: point %d disk %s reads other bytes than were backed up", what, p.Gen, disk)
	}
	if got := exportBytes(t, r, p, disk); !bytes.Equal(got, want) {
		t.Fatalf("%s: export of point %d disk %s gives other bytes than were backed up", what, p.Gen, disk)
	}
	rep, err := r.Verify(context.Background(), VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("%s: verify: %v %+v", what, err, rep)
	}
	if probs, err := r.Check(context.Background()); err != nil || len(probs) > 0 {
		t.Fatalf("%s: check: %v %v", what, err, probs)
	}
}

// TestDiskComesBack: a disk absent from one point and present again later
// (now all zero) must not show the bytes of its earlier life, through the
// reader, export and verify; also after the earlier point is forgotten,
// and for a disk that shrank and grew. (Issue #12, item 1.)
func TestDiskComesBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	const size = 16 * testBS
	for _, sparse := range []bool{true, false} {
		t.Run(fmt.Sprintf("absent/sparse=%v", sparse), func(t *testing.T) {
			r := newTestRepo(t)
			a := random(size)
			b := make([]byte, size)
			copy(b[10*testBS:14*testBS], random(4*testBS))
			pointOf(t, r, "vm", sparse, "a", a, "b", b)
			pointOf(t, r, "vm", sparse, "a", a)
			p3 := pointOf(t, r, "vm", sparse, "a", a, "b", make([]byte, size))
			checkPoint(t, r, p3, "b", make([]byte, size), "disk back")
			// An incremental on top of the returned disk keeps its new life.
			s, err := r.BeginPoint(context.Background(), "vm", PointOptions{})
			if err != nil {
				t.Fatal(err)
			}
			writeDisk(t, s, "a", a, sparse)
			w, err := s.AddDisk(context.Background(), "b", size, DiskOptions{Changed: []Extent{{Offset: 0, Length: testBS}}})
			if err != nil {
				t.Fatal(err)
			}
			b4 := make([]byte, size)
			copy(b4, random(testBS))
			if err := w.WriteBlock(0, b4[:testBS]); err != nil {
				t.Fatal(err)
			}
			p4, err := s.Commit(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkPoint(t, r, p4, "b", b4, "incremental after disk back")
			if _, err := r.Forget(context.Background(), "vm", []string{"1"}, false); err != nil {
				t.Fatal(err)
			}
			checkPoint(t, r, p3, "b", make([]byte, size), "after forget of point 1")
			checkPoint(t, r, p4, "b", b4, "after forget of point 1")
		})
		t.Run(fmt.Sprintf("shrink-grow/sparse=%v", sparse), func(t *testing.T) {
			r := newTestRepo(t)
			b := make([]byte, size)
			copy(b[10*testBS:14*testBS], random(4*testBS))
			pointOf(t, r, "vm", sparse, "b", b)
			p2 := pointOf(t, r, "vm", sparse, "b", b[:8*testBS])
			p3 := pointOf(t, r, "vm", sparse, "b", make([]byte, size))
			checkPoint(t, r, p2, "b", b[:8*testBS], "shrunk")
			checkPoint(t, r, p3, "b", make([]byte, size), "grown")
			if _, err := r.Forget(context.Background(), "vm", []string{"1"}, false); err != nil {
				t.Fatal(err)
			}
			checkPoint(t, r, p3, "b", make([]byte, size), "grown, after forget of point 1")
			if _, err := r.Forget(context.Background(), "vm", []string{"2"}, false); err != nil {
				t.Fatal(err)
			}
			checkPoint(t, r, p3, "b", make([]byte, size), "grown, after forget of point 2")
		})
	}
	// A disk that leaves for good: once no point holds it, its versions are
	// released (nothing stays stored for it).
	t.Run("gone", func(t *testing.T) {
		r := newTestRepo(t)
		b := random(4 * testBS)
		pointOf(t, r, "vm", true, "a", random(testBS), "b", b)
		pointOf(t, r, "vm", true, "a", random(testBS))
		res, err := r.Forget(context.Background(), "vm", []string{"1"}, false)
		if err != nil {
			t.Fatal(err)
		}
		if res.VersionsDeleted < 5 {
			t.Fatalf("forget of the only point with disk b deleted %d block versions, want its 5", res.VersionsDeleted)
		}
	})
	_ = time.Second
}

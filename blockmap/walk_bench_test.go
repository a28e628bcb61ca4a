package blockmap

import (
	"context"
	"encoding/binary"
	"testing"
)

// benchBlocks is the number of data blocks of the benchmark's disk.
const benchBlocks = 1 << 20

// benchRepo makes a repository holding one point of one disk with
// benchBlocks data blocks (index entries only: nothing reads the images)
// and a second point that changed every 16th block, so a walk meets older
// versions too.
func benchRepo(b *testing.B) (*Repo, Point) {
	b.Helper()
	r := newTestRepo(b)
	ctx := context.Background()
	size := int64(benchBlocks) * int64(r.BlockSize())
	var p Point
	for round := range 2 {
		s, err := r.BeginPoint(ctx, "vm", PointOptions{})
		if err != nil {
			b.Fatal(err)
		}
		w, err := s.AddDisk(ctx, "d0", size, DiskOptions{Full: round == 0})
		if err != nil {
			b.Fatal(err)
		}
		for i := uint64(0); i < benchBlocks; i++ {
			if round == 1 && i%16 != 0 {
				continue
			}
			var v blockValue
			v.kind = kindData
			binary.LittleEndian.PutUint64(v.sum[:], i*2654435761+uint64(round))
			w.entries = append(w.entries, entry{block: i, val: v})
		}
		if p, err = s.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return r, p
}

// BenchmarkWalkOpenDisk times OpenDisk (a walk of the point's block map
// and its digest check) over a disk of a million data blocks.
func BenchmarkWalkOpenDisk(b *testing.B) {
	r, p := benchRepo(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		dr, err := r.OpenDisk(ctx, p, "d0")
		if err != nil {
			b.Fatal(err)
		}
		dr.Close()
	}
}

// BenchmarkWalkLoadBase times the base load of an incremental backup
// (loadBase through AddDisk) over the same disk.
func BenchmarkWalkLoadBase(b *testing.B) {
	r, p := benchRepo(b)
	ctx := context.Background()
	size := int64(benchBlocks) * int64(r.BlockSize())
	b.ResetTimer()
	for b.Loop() {
		s, err := r.BeginPoint(ctx, "vm", PointOptions{})
		if err != nil {
			b.Fatal(err)
		}
		w, err := s.AddDisk(ctx, "d0", size, DiskOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if w.baseAll == nil || w.baseSpan.to != p.Gen {
			b.Fatal("AddDisk did not load the whole base")
		}
		b.StopTimer()
		if err := s.Abort(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

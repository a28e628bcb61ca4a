package blockmap

import (
	"context"
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the CPU time per operation since start: on a loaded
// machine it varies less than the wall time.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

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
	start := cpuTime()
	defer func() { reportCPU(b, start) }()
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
	start := cpuTime()
	defer func() { reportCPU(b, start) }()
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

// BenchmarkWalkMap times walkMap alone (the walk under OpenDisk) in one
// read transaction.
func BenchmarkWalkMap(b *testing.B) {
	r, p := benchRepo(b)
	ctx := context.Background()
	d := p.Disks[0]
	n := (d.Size + int64(r.BlockSize()) - 1) / int64(r.BlockSize())
	b.ResetTimer()
	start := cpuTime()
	defer func() { reportCPU(b, start) }()
	for b.Loop() {
		var blocks int
		err := r.view(ctx, func(db *badger.DB) error {
			return db.View(func(txn *badger.Txn) error {
				return walkMap(txn, d.ID, diskSpan(p, d), n, func(uint64, uint32, blockValue) error { blocks++; return nil })
			})
		})
		if err != nil || blocks != benchBlocks {
			b.Fatalf("walk: %d blocks, %v", blocks, err)
		}
	}
}

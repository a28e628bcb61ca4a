package blockmap

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// TestConcurrentReads reads one point from 8 goroutines at random offsets
// and lengths and compares every byte with the source.
func TestConcurrentReads(t *testing.T) {
	r := newTestRepo(t)
	rng := rand.New(rand.NewPCG(5, 5))
	d := &modelDisk{name: "d0", data: make([]byte, 40*testBS+333), changed: map[int64]bool{}}
	for i := range d.data[:25*testBS] {
		d.data[i] = byte(rng.Uint32())
	}
	backup(t, r, "vm", []*modelDisk{d}, true, time.Time{})
	for i := 0; i < 5; i++ {
		d.mutate(rng)
		backup(t, r, "vm", []*modelDisk{d}, false, time.Time{})
	}
	p, err := r.ResolvePoint(context.Background(), "vm", "latest")
	if err != nil {
		t.Fatal(err)
	}
	dr, err := r.OpenDisk(context.Background(), p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < 300; i++ {
				off := rng.Int64N(dr.Size())
				buf := make([]byte, 1+rng.IntN(3*testBS))
				n, err := dr.ReadAt(buf, off)
				if err != nil && n != int(dr.Size()-off) {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], d.data[off:off+int64(n)]) {
					errs <- errors.New("wrong bytes")
					return
				}
			}
		}(uint64(g))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestCorruptBlockNamed flips a byte in a delta image: the reader returns a
// BlockError naming the block, and other blocks still read.
func TestCorruptBlockNamed(t *testing.T) {
	r := newTestRepo(t)
	d := &modelDisk{name: "d0", data: bytes.Repeat([]byte{7}, 4*testBS), changed: map[int64]bool{}}
	p := backup(t, r, "vm", []*modelDisk{d}, true, time.Time{})
	f, err := os.OpenFile(r.imagePath(p.Disks[0].ID, p.Gen), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{8}, 2*testBS+5)
	f.Close()
	dr, err := r.OpenDisk(context.Background(), p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	buf := make([]byte, testBS)
	_, err = dr.ReadAt(buf, 2*testBS)
	var be *BlockError
	if !errors.As(err, &be) || be.Offset != 2*testBS || !errors.Is(err, ErrCorrupt) || be.Disk != "d0" || be.Point != p.ID {
		t.Fatalf("corrupt block: got %v", err)
	}
	if _, err := dr.ReadAt(buf, 3*testBS); err != nil || buf[0] != 7 {
		t.Fatalf("healthy block after a corrupt one: %v", err)
	}
}

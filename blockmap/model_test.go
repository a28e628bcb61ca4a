package blockmap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const testBS = 64 << 10

func newTestRepo(t testing.TB) *Repo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	ctx := context.Background()
	if err := Init(ctx, dir, InitOptions{BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// modelDisk is the source a test backs up: its bytes and which blocks
// changed since the last backup.
type modelDisk struct {
	name    string
	data    []byte
	changed map[int64]bool
}

func (d *modelDisk) blocks() int64 { return (int64(len(d.data)) + testBS - 1) / testBS }

func (d *modelDisk) mutate(rng *rand.Rand) {
	n := rng.IntN(6)
	for i := 0; i < n; i++ {
		off := rng.Int64N(int64(len(d.data)))
		l := min(int64(1+rng.IntN(3*testBS)), int64(len(d.data))-off)
		switch rng.IntN(4) {
		case 0: // zeros
			clear(d.data[off : off+l])
		case 1: // write the same bytes again (changed per CBT, same hash)
		default:
			for j := off; j < off+l; j++ {
				d.data[j] = byte(rng.Uint32())
			}
		}
		for b := off / testBS; b <= (off+l-1)/testBS; b++ {
			d.changed[b] = true
		}
	}
	if rng.IntN(12) == 0 { // resize
		newSize := int64(len(d.data)) + int64(rng.IntN(4*testBS)) - 2*testBS
		if newSize < 1000 {
			newSize = 1000
		}
		nd := make([]byte, newSize)
		copy(nd, d.data)
		d.data = nd
		d.changed = map[int64]bool{}
		for b := int64(0); b < d.blocks(); b++ {
			d.changed[b] = true
		}
	}
}

func backup(t *testing.T, r *Repo, vm string, disks []*modelDisk, full bool, when time.Time) Point {
	t.Helper()
	ctx := context.Background()
	s, err := r.BeginPoint(ctx, vm, PointOptions{Time: when, Purpose: "model test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		w, err := s.AddDisk(ctx, d.name, int64(len(d.data)), DiskOptions{Full: full})
		if err != nil {
			t.Fatal(err)
		}
		isFull, _ := w.Full()
		if isFull && d.blocks()%2 == 0 {
			// Runs of blocks through WriteBlocks, in pieces of 3 blocks.
			for b := int64(0); b < d.blocks(); b += 3 {
				end := min((b+3)*testBS, int64(len(d.data)))
				if err := w.WriteBlocks(b, d.data[b*testBS:end]); err != nil {
					t.Fatal(err)
				}
			}
			d.changed = map[int64]bool{}
			continue
		}
		for b := int64(0); b < d.blocks(); b++ {
			if !isFull && !d.changed[b] {
				continue
			}
			end := min((b+1)*testBS, int64(len(d.data)))
			if isFull && bytes.Count(d.data[b*testBS:end], []byte{0}) == int(end-b*testBS) && b%2 == 0 {
				continue // full backups may skip zero areas entirely
			}
			if err := w.WriteBlock(b, d.data[b*testBS:end]); err != nil {
				t.Fatal(err)
			}
		}
		d.changed = map[int64]bool{}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readAll(t *testing.T, r *Repo, p Point, disk string) []byte {
	t.Helper()
	dr, err := r.OpenDisk(context.Background(), p, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	buf := make([]byte, dr.Size())
	// Read in odd-sized pieces to cross block boundaries.
	for off := int64(0); off < dr.Size(); {
		n := min(int64(77777), dr.Size()-off)
		m, err := dr.ReadAt(buf[off:off+n], off)
		if err != nil && err != io.EOF {
			t.Fatalf("read %s %s at %d: %v", p.ID, disk, off, err)
		}
		off += int64(m)
	}
	// The hole map must agree with the bytes: holes read as zeros.
	for off := int64(0); off < dr.Size(); {
		d, err := dr.NextData(off)
		if err != nil {
			if !bytes.Equal(buf[off:], make([]byte, dr.Size()-off)) {
				t.Fatalf("bytes after last data extent at %d are not zero", off)
			}
			break
		}
		if !bytes.Equal(buf[off:d], make([]byte, d-off)) {
			t.Fatalf("hole %d..%d is not zero", off, d)
		}
		h, err := dr.NextHole(d)
		if err != nil || h <= d {
			t.Fatalf("NextHole(%d) = %d, %v", d, h, err)
		}
		off = h
	}
	return buf
}

func exportBytes(t *testing.T, r *Repo, p Point, disk string) []byte {
	t.Helper()
	dr, err := r.OpenDisk(context.Background(), p, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	f, err := os.CreateTemp(t.TempDir(), "export")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := dr.ExportSparse(context.Background(), f, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestModel writes random blocks, zeros, overwrites and resizes to disks of
// several sizes over 36 generations, prunes at random, and checks every
// retained point byte for byte through the reader and through export.
func TestModel(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	sizes := []int64{testBS*16 + 1000, 3 * testBS * 8, 5*testBS + 17}
	var disks []*modelDisk
	for i, s := range sizes {
		d := &modelDisk{name: fmt.Sprintf("disk%d", i), data: make([]byte, s), changed: map[int64]bool{}}
		for j := range d.data[:s/2] {
			d.data[j] = byte(rng.Uint32())
		}
		disks = append(disks, d)
	}
	want := map[uint32]map[string][]byte{} // generation -> disk -> bytes
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	forceFull := false
	for g := 0; g < 36; g++ {
		if g > 0 {
			for _, d := range disks {
				d.mutate(rng)
			}
		}
		when = when.Add(time.Duration(1+rng.IntN(20)) * time.Hour)
		// After the newest point is forgotten, the changes it had absorbed are
		// no longer tracked relative to the new base: back up in full (as
		// backupd does when its stored changeId belongs to a deleted point).
		p := backup(t, r, "vm1", disks, forceFull || rng.IntN(8) == 0, when)
		forceFull = false
		want[p.Gen] = map[string][]byte{}
		for _, d := range disks {
			want[p.Gen][d.name] = bytes.Clone(d.data)
		}
		switch rng.IntN(6) {
		case 0:
			res, err := r.Prune(ctx, "vm1", Policy{KeepLast: 1 + rng.IntN(4), KeepDaily: rng.IntN(3)}, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range res.Deleted {
				delete(want, p.Gen)
			}
		case 1:
			pts, _ := r.Points(ctx, "vm1")
			if len(pts) > 1 {
				victim := pts[rng.IntN(len(pts))]
				forceFull = victim.Gen == pts[len(pts)-1].Gen
				if _, err := r.Forget(ctx, "vm1", []string{victim.ID}, false); err != nil {
					t.Fatal(err)
				}
				delete(want, victim.Gen)
			}
		}
		pts, err := r.Points(ctx, "vm1")
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != len(want) {
			t.Fatalf("generation %d: %d points listed, model has %d", g, len(pts), len(want))
		}
		for _, p := range pts {
			for _, d := range p.Disks {
				got := readAll(t, r, p, d.Name)
				if !bytes.Equal(got, want[p.Gen][d.Name]) {
					t.Fatalf("after generation %d: point %s (gen %d) disk %s differs from the model", g, p.ID, p.Gen, d.Name)
				}
			}
		}
		if probs, err := r.Check(ctx); err != nil || len(probs) > 0 {
			t.Fatalf("after generation %d: check: %v %v", g, err, probs)
		}
	}
	// Every retained point through export, too.
	pts, _ := r.Points(ctx, "vm1")
	for _, p := range pts {
		for _, d := range p.Disks {
			if got := exportBytes(t, r, p, d.Name); sha256.Sum256(got) != sha256.Sum256(want[p.Gen][d.Name]) {
				t.Fatalf("export of %s %s differs from the model", p.ID, d.Name)
			}
		}
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

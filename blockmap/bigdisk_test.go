package blockmap

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// A disk of 8 TiB (2^27 blocks of 64 KiB) with three data blocks: the
// writer's and the reader's maps hold only those (a per-block map would
// need gigabytes), and the data/hole answers are exact at high offsets.
func TestHugeSparseDiskMaps(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	const size = int64(8) << 40
	bs := int64(r.BlockSize())
	blocks := []int64{0, size/bs/2 + 1, size/bs - 1}
	write := func(full bool) Point {
		s, err := r.BeginPoint(ctx, "vm", PointOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddDisk(ctx, "d0", size, DiskOptions{Full: full})
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range blocks {
			if err := w.WriteBlock(b, bytes.Repeat([]byte{byte(i + 1)}, int(bs))); err != nil {
				t.Fatal(err)
			}
		}
		p, err := s.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	write(true)
	blocks = blocks[1:] // the full re-read drops block 0: it becomes zero
	p := write(true)
	dr, err := r.OpenDisk(ctx, p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	if n := dr.MapBytes(); n > 1<<20 {
		t.Errorf("reader map of a disk with 2 data blocks holds %d bytes", n)
	}
	want := []Extent{{Offset: blocks[0] * bs, Length: bs}, {Offset: blocks[1] * bs, Length: bs}}
	if got := dr.DataExtents(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("data extents %v, want %v", got, want)
	}
	if off, err := dr.NextData(0); err != nil || off != blocks[0]*bs {
		t.Errorf("NextData(0) = %d, %v", off, err)
	}
	if off, err := dr.NextHole(blocks[0]*bs + 5); err != nil || off != (blocks[0]+1)*bs {
		t.Errorf("NextHole inside data = %d, %v", off, err)
	}
	if off, err := dr.NextHole(blocks[1] * bs); err != nil || off != size {
		t.Errorf("NextHole in the last block = %d, %v; want the end %d", off, err, size)
	}
	if _, err := dr.NextData(blocks[1]*bs + bs); !errors.Is(err, ErrNoData) {
		t.Errorf("NextData past the last data: %v", err)
	}
	buf := make([]byte, 2*bs)
	if _, err := dr.ReadAt(buf, blocks[0]*bs-bs); err != nil || buf[0] != 0 || buf[bs] != 1 || buf[2*bs-1] != 1 {
		t.Errorf("read around the middle block: %v, %d %d", err, buf[0], buf[bs])
	}
	if _, err := dr.ReadAt(buf[:bs], 0); err != nil || !isZero(buf[:bs]) {
		t.Errorf("block 0 after a full re-read without it: %v, not zero", err)
	}

	s, err := r.BeginPoint(ctx, "vm2", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort(ctx)
	if _, err := s.AddDisk(ctx, "d0", MaxDiskSize+1, DiskOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a disk larger than MaxDiskSize: %v", err)
	}
}

func TestBlockRanges(t *testing.T) {
	var s blockRanges
	for i := int64(0); i < 20000; i++ {
		b := (i * 7919) % 20000 // every block once, out of order
		if b%3 != 0 {
			s.add(b, b+1)
		}
	}
	for b := int64(0); b < 20001; b++ {
		if got, want := s.contains(b), b < 20000 && b%3 != 0; got != want {
			t.Fatalf("contains(%d) = %v", b, got)
		}
	}
}

// A block past what the repository's filesystem allows in one file (ext4:
// 16 TiB) fails with advice, not a bare EFBIG. Skipped where the
// filesystem takes it (XFS, tmpfs).
func TestFileTooLargeExplained(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	s, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort(ctx)
	const size = int64(32) << 40
	w, err := s.AddDisk(ctx, "d0", size, DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteBlock(size/int64(r.BlockSize())-1, bytes.Repeat([]byte{7}, r.BlockSize()))
	if err == nil {
		t.Skip("the repository's filesystem holds files of 32 TiB")
	}
	if !strings.Contains(err.Error(), "XFS") {
		t.Errorf("write past the filesystem's file size limit: %v, want advice", err)
	}
}

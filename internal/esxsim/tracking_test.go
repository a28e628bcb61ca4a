package esxsim

import (
	"os"
	"path/filepath"
	"testing"
)

func TestChangeInfoPagesCoverExactlyTheBlocks(t *testing.T) {
	blocks := []int64{0, 1, 2, 10, 12, 13, 100}
	capacity := int64(101) * BlockSize
	var got []int64
	pages := 0
	for start := int64(0); start < capacity; pages++ {
		info := changeInfo(blocks, capacity, start, 2)
		if len(info.ChangedArea) > 2 {
			t.Fatalf("page of %d areas, max 2", len(info.ChangedArea))
		}
		for _, a := range info.ChangedArea {
			if a.Start < start || a.Start+a.Length > start+info.Length {
				t.Fatalf("area %+v outside page [%d,+%d)", a, start, info.Length)
			}
			for b := a.Start / BlockSize; b*BlockSize < a.Start+a.Length; b++ {
				got = append(got, b)
			}
		}
		start += info.Length
	}
	if pages != 2 {
		t.Errorf("%d pages, want 2 (4 extents, 2 per page, none left after the second)", pages)
	}
	if len(got) != len(blocks) {
		t.Fatalf("got blocks %v, want %v", got, blocks)
	}
	for i := range got {
		if got[i] != blocks[i] {
			t.Fatalf("got blocks %v, want %v", got, blocks)
		}
	}
}

func TestChangeInfoClipsLastBlockToCapacity(t *testing.T) {
	capacity := int64(3*BlockSize + 512)
	info := changeInfo([]int64{3}, capacity, 0, 10)
	if len(info.ChangedArea) != 1 || info.ChangedArea[0].Start != 3*BlockSize || info.ChangedArea[0].Length != 512 {
		t.Errorf("areas %+v, want one of 512 bytes at %d", info.ChangedArea, 3*BlockSize)
	}
	if info.Length != capacity {
		t.Errorf("length %d, want %d", info.Length, capacity)
	}
}

func TestTrackingChangeIDs(t *testing.T) {
	var tr tracking
	if err := tr.start(true, 10*BlockSize); err != nil {
		t.Fatal(err)
	}
	tr.mark(BlockSize-1, 2) // blocks 0 and 1
	s1 := tr.freeze()
	tr.mark(5*BlockSize, 1)
	s2 := tr.freeze()
	epoch, seq, ok := parseChangeID(s1.changeID())
	if !ok || epoch != s2.epoch || seq != s1.seq {
		t.Fatalf("parse %q = %q %d %v", s1.changeID(), epoch, seq, ok)
	}
	if got := s2.changedBlocks(seq); len(got) != 1 || got[0] != 5 {
		t.Errorf("changed since s1 = %v, want [5]", got)
	}
	if got := s1.changedBlocks(0); len(got) != 2 {
		t.Errorf("changed since enabling = %v, want [0 1]", got)
	}
	if _, _, ok := parseChangeID("no-slash"); ok {
		t.Error("parsed a changeId without a sequence")
	}
}

func TestNonZeroBlocksSkipsHolesAndZeros(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d-flat.vmdk")
	if err := createFlat(path, 16*BlockSize); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		off int64
		b   byte
	}{{2*BlockSize + 7, 1}, {5 * BlockSize, 0}, {15*BlockSize + BlockSize - 1, 9}} {
		if _, err := f.WriteAt([]byte{w.b}, w.off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	got, err := nonZeroBlocks(path, 16*BlockSize, BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 2 || got[1] != 15 {
		t.Errorf("non-zero blocks %v, want [2 15]", got)
	}
	clone := path + ".copy"
	if err := cloneFile(path, clone); err != nil {
		t.Fatal(err)
	}
	again, err := nonZeroBlocks(clone, 16*BlockSize, BlockSize)
	if err != nil || len(again) != 2 {
		t.Errorf("clone non-zero blocks %v, %v", again, err)
	}
}

// FuzzChangeInfo checks that paging any block set with any page size
// returns each block exactly once, in order, and always advances.
func FuzzChangeInfo(f *testing.F) {
	f.Add([]byte{0, 1, 2, 9, 200}, uint8(1), uint16(0))
	f.Add([]byte{255}, uint8(3), uint16(100))
	f.Add([]byte{}, uint8(0), uint16(7))
	f.Fuzz(func(t *testing.T, raw []byte, pageSize uint8, startBlock uint16) {
		blocks := sortedBlocks(raw)
		capacity := int64(256) * BlockSize
		first := int64(startBlock%256) * BlockSize
		maxAreas := int(pageSize%8) + 1
		var seen []int64
		for start, calls := first, 0; start < capacity; calls++ {
			if calls > 300 {
				t.Fatal("paging does not terminate")
			}
			info := changeInfo(blocks, capacity, start, maxAreas)
			if info.Length <= 0 || info.StartOffset != start || len(info.ChangedArea) > maxAreas {
				t.Fatalf("bad page %+v at %d", info, start)
			}
			for _, a := range info.ChangedArea {
				for b := a.Start / BlockSize; b*BlockSize < a.Start+a.Length; b++ {
					seen = append(seen, b)
				}
			}
			start += info.Length
		}
		var want []int64
		for _, b := range blocks {
			if b >= first/BlockSize {
				want = append(want, b)
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("seen %v, want %v", seen, want)
		}
		for i := range seen {
			if seen[i] != want[i] {
				t.Fatalf("seen %v, want %v", seen, want)
			}
		}
	})
}

// sortedBlocks turns fuzz bytes into a sorted set of block numbers below
// 256.
func sortedBlocks(raw []byte) []int64 {
	set := map[int64]bool{}
	for _, b := range raw {
		set[int64(b)] = true
	}
	var blocks []int64
	for b := int64(0); b < 256; b++ {
		if set[b] {
			blocks = append(blocks, b)
		}
	}
	return blocks
}

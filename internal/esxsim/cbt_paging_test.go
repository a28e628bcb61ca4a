package esxsim

import (
	"slices"
	"testing"

	"github.com/vmware/govmomi/vim25/types"
)

// pageAll queries every page from start to capacity as VMware's samples do
// (while startOffset < capacity, startOffset = StartOffset + Length) and
// returns the pages in order.
func pageAll(t *testing.T, blocks []int64, capacity, start int64, maxAreas int, maxBytes int64) []types.DiskChangeInfo {
	t.Helper()
	var pages []types.DiskChangeInfo
	for start < capacity {
		if len(pages) > 10000 {
			t.Fatal("paging does not terminate")
		}
		info := changePage(blocks, capacity, start, maxAreas, maxBytes)
		if info.StartOffset != start || info.Length <= 0 || (maxBytes > 0 && info.Length > maxBytes) ||
			info.StartOffset+info.Length > capacity || len(info.ChangedArea) > maxAreas {
			t.Fatalf("bad page at %d (max %d areas, %d bytes): %+v", start, maxAreas, maxBytes, info)
		}
		for _, a := range info.ChangedArea {
			if a.Length <= 0 || a.Start < start || a.Start+a.Length > start+info.Length {
				t.Fatalf("area %+v outside page [%d,+%d)", a, start, info.Length)
			}
		}
		pages = append(pages, info)
		start = info.StartOffset + info.Length
	}
	return pages
}

// mergedAreas concatenates the areas of pages, joining areas that touch.
func mergedAreas(pages []types.DiskChangeInfo) []types.DiskChangeExtent {
	var out []types.DiskChangeExtent
	for _, p := range pages {
		for _, a := range p.ChangedArea {
			if n := len(out); n > 0 && out[n-1].Start+out[n-1].Length == a.Start {
				out[n-1].Length += a.Length
				continue
			}
			out = append(out, a)
		}
	}
	return out
}

func TestChangePageEmptyPagesBetweenChangesAtStartAndEnd(t *testing.T) {
	const pageBytes = 64 * BlockSize // 4 MiB pages
	capacity := int64(1024) * BlockSize
	// Changes only in the first page and the last one.
	blocks := []int64{0, 1, 2, 10, 1000, 1020, 1021, 1022, 1023}
	pages := pageAll(t, blocks, capacity, 0, DefaultMaxChangedAreas, pageBytes)
	if len(pages) != 16 {
		t.Fatalf("%d pages, want 16 of %d bytes", len(pages), pageBytes)
	}
	for i, p := range pages {
		if p.Length != pageBytes {
			t.Errorf("page %d: length %d, want %d", i, p.Length, pageBytes)
		}
		switch empty := len(p.ChangedArea) == 0; {
		case i == 0 || i == 15:
			if empty {
				t.Errorf("page %d has no areas, want the changes there", i)
			}
		case !empty:
			t.Errorf("page %d over an unchanged stretch has areas %+v", i, p.ChangedArea)
		}
	}
	want := []types.DiskChangeExtent{
		{Start: 0, Length: 3 * BlockSize},
		{Start: 10 * BlockSize, Length: BlockSize},
		{Start: 1000 * BlockSize, Length: BlockSize},
		{Start: 1020 * BlockSize, Length: 4 * BlockSize},
	}
	if got := mergedAreas(pages); !slices.Equal(got, want) {
		t.Errorf("areas %+v, want %+v", got, want)
	}

	// Stopping at the first empty page, as a wrong caller would, loses the
	// changes at the end.
	if first := changePage(blocks, capacity, pages[0].Length, DefaultMaxChangedAreas, pageBytes); len(first.ChangedArea) != 0 {
		t.Fatalf("second page has areas %+v", first.ChangedArea)
	}
}

func TestChangePageSplitsAnExtentAtThePageEnd(t *testing.T) {
	const pageBytes = 4 * BlockSize
	capacity := int64(16) * BlockSize
	blocks := []int64{2, 3, 4, 5, 6, 7, 8, 9, 10} // blocks 2..10 span pages 0, 1 and 2
	pages := pageAll(t, blocks, capacity, 0, 1, pageBytes)
	if len(pages) != 4 {
		t.Fatalf("%d pages, want 4: %+v", len(pages), pages)
	}
	for i, want := range []types.DiskChangeExtent{
		{Start: 2 * BlockSize, Length: 2 * BlockSize},
		{Start: 4 * BlockSize, Length: 4 * BlockSize},
		{Start: 8 * BlockSize, Length: 3 * BlockSize},
	} {
		if len(pages[i].ChangedArea) != 1 || pages[i].ChangedArea[0] != want {
			t.Errorf("page %d areas %+v, want [%+v]", i, pages[i].ChangedArea, want)
		}
	}
	if len(pages[3].ChangedArea) != 0 {
		t.Errorf("last page areas %+v, want none", pages[3].ChangedArea)
	}
	if got := mergedAreas(pages); len(got) != 1 || got[0] != (types.DiskChangeExtent{Start: 2 * BlockSize, Length: 9 * BlockSize}) {
		t.Errorf("merged areas %+v, want blocks 2..10", got)
	}
}

func TestChangePageAreaLimitInsideABytePage(t *testing.T) {
	const pageBytes = 8 * BlockSize
	capacity := int64(32) * BlockSize
	blocks := []int64{1, 3, 5, 30}
	// Two areas fit: the first page stops after block 3, the next starts
	// there and covers at most pageBytes.
	info := changePage(blocks, capacity, 0, 2, pageBytes)
	if len(info.ChangedArea) != 2 || info.Length != 4*BlockSize {
		t.Errorf("first page %+v, want 2 areas and length %d", info, 4*BlockSize)
	}
	info = changePage(blocks, capacity, 4*BlockSize, 2, pageBytes)
	if len(info.ChangedArea) != 1 || info.Length != pageBytes {
		t.Errorf("second page %+v, want block 5 and length %d", info, pageBytes)
	}
	// Exactly maxAreas areas with the next extent beyond the page: the page
	// still covers all of maxBytes.
	info = changePage(blocks, capacity, 0, 3, pageBytes)
	if len(info.ChangedArea) != 3 || info.Length != pageBytes {
		t.Errorf("page %+v, want 3 areas and length %d", info, pageBytes)
	}
}

func TestChangeInfoDefaultPageBound(t *testing.T) {
	capacity := int64(DefaultMaxPageBytes)*2 + 3<<20
	last := capacity/BlockSize - 1
	info := changeInfo([]int64{last}, capacity, 0, DefaultMaxChangedAreas)
	if len(info.ChangedArea) != 0 || info.Length != DefaultMaxPageBytes {
		t.Errorf("first page %+v, want no areas and length %d", info, DefaultMaxPageBytes)
	}
	info = changeInfo([]int64{last}, capacity, 2*DefaultMaxPageBytes, DefaultMaxChangedAreas)
	if len(info.ChangedArea) != 1 || info.Length != 3<<20 {
		t.Errorf("last page %+v, want the last block and length %d", info, 3<<20)
	}
	// Disks up to the bound are one page when the areas fit, as before.
	info = changeInfo([]int64{0, DefaultMaxPageBytes/BlockSize - 1}, DefaultMaxPageBytes, 0, DefaultMaxChangedAreas)
	if info.Length != DefaultMaxPageBytes || len(info.ChangedArea) != 2 {
		t.Errorf("page %+v of a %d-byte disk, want it all", info, DefaultMaxPageBytes)
	}
}

// FuzzChangePage checks that paging any block set with any area limit and
// page size returns each block exactly once, in order, in pages that start
// where asked, stay inside their bound and always advance.
func FuzzChangePage(f *testing.F) {
	f.Add([]byte{0, 1, 2, 9, 200, 255}, uint8(1), uint8(3), uint16(0))
	f.Add([]byte{255}, uint8(3), uint8(0), uint16(100))
	f.Add([]byte{0, 254}, uint8(7), uint8(15), uint16(1))
	f.Add([]byte{}, uint8(0), uint8(1), uint16(7))
	f.Fuzz(func(t *testing.T, raw []byte, areas, pageBlocks uint8, startBlock uint16) {
		blocks := sortedBlocks(raw)
		capacity := int64(256) * BlockSize
		first := int64(startBlock%256) * BlockSize
		maxAreas := int(areas%8) + 1
		maxBytes := int64(pageBlocks%64) * BlockSize // 0: no byte bound
		var seen []int64
		for _, p := range pageAll(t, blocks, capacity, first, maxAreas, maxBytes) {
			for _, a := range p.ChangedArea {
				for b := a.Start / BlockSize; b*BlockSize < a.Start+a.Length; b++ {
					seen = append(seen, b)
				}
			}
		}
		var want []int64
		for _, b := range blocks {
			if b >= first/BlockSize {
				want = append(want, b)
			}
		}
		if !slices.Equal(seen, want) {
			t.Fatalf("seen %v, want %v", seen, want)
		}
	})
}

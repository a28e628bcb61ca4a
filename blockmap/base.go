package blockmap

import (
	"errors"
	"maps"
	"runtime"
	"sort"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// sparseBaseLimit is the share of a disk's blocks up to which an
// incremental with known changed areas loads only their previous versions
// (one index seek per block) instead of the whole disk's (one pass).
const sparseBaseLimit = 8 // 1/8 of the blocks

// coveredBlocks turns byte extents into sorted, merged block ranges
// [first, end) clipped to nblocks, and counts their blocks.
func coveredBlocks(extents []Extent, bs int64, nblocks int64) ([][2]int64, int64) {
	var rs [][2]int64
	for _, e := range extents {
		if e.Length <= 0 || e.Offset < 0 {
			continue
		}
		first, end := e.Offset/bs, min((e.Offset+e.Length+bs-1)/bs, nblocks)
		if first < end {
			rs = append(rs, [2]int64{first, end})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	merged := rs[:0]
	var n int64
	for _, r := range rs {
		if k := len(merged); k > 0 && r[0] <= merged[k-1][1] {
			if r[1] > merged[k-1][1] {
				n += r[1] - merged[k-1][1]
				merged[k-1][1] = r[1]
			}
			continue
		}
		merged = append(merged, r)
		n += r[1] - r[0]
	}
	return merged, n
}

// loadSparseBase reads the newest version of each block in w.covered (the
// blocks of the latest point, as loadBase explains) with one seek each.
func (w *DiskWriter) loadSparseBase(db *badger.DB) error {
	// The seeks decompress index blocks, which is CPU work: split the
	// ranges into one part per core, each with its own iterator.
	parts := splitRanges(w.covered, min(runtime.GOMAXPROCS(0), 4), 256)
	found := make([]map[int64]blockValue, len(parts))
	err := db.View(func(txn *badger.Txn) error {
		errs := make([]error, len(parts))
		var wg sync.WaitGroup
		for i, part := range parts {
			found[i] = map[int64]blockValue{}
			wg.Go(func() { errs[i] = w.seekVersions(txn, part, found[i]) })
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	if err != nil {
		return err
	}
	w.baseSparse = found[0]
	for _, m := range found[1:] {
		maps.Copy(w.baseSparse, m)
	}
	return nil
}

// seekVersions finds the newest version of each block in ranges.
func (w *DiskWriter) seekVersions(txn *badger.Txn, ranges [][2]int64, into map[int64]blockValue) error {
	vi := newVersionIter(txn, w.id, false)
	defer vi.close()
	for _, r := range ranges {
		for b := r[0]; b < r[1]; b++ {
			found, more, err := vi.seekNewest(uint64(b), w.baseSpan)
			if err != nil || !more {
				return err
			}
			if !found {
				continue // no version: never written (in this life of the disk)
			}
			if into[b], err = vi.value(); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitRanges cuts sorted block ranges into at most n parts of about the
// same number of blocks, none smaller than minBlocks (so small lists stay
// whole).
func splitRanges(rs [][2]int64, n int, minBlocks int64) [][][2]int64 {
	var total int64
	for _, r := range rs {
		total += r[1] - r[0]
	}
	per := max((total+int64(n)-1)/int64(max(n, 1)), minBlocks)
	var parts [][][2]int64
	var cur [][2]int64
	var have int64
	for _, r := range rs {
		for r[0] < r[1] {
			take := min(r[1]-r[0], per-have)
			cur = append(cur, [2]int64{r[0], r[0] + take})
			r[0] += take
			if have += take; have == per {
				parts, cur, have = append(parts, cur), nil, 0
			}
		}
	}
	if len(cur) > 0 || len(parts) == 0 {
		parts = append(parts, cur)
	}
	return parts
}

// base is what the previous point holds for block idx: kind 0 (nothing:
// a hole), kindData with its hash, or kindZero. known is false for a
// block whose previous version the writer did not load (outside the
// changed areas it was given); callers then store the block as if it
// changed, which is always correct.
func (w *DiskWriter) base(idx int64) (kind byte, sum [32]byte, known bool) {
	switch {
	case w.baseSparse != nil:
		i := sort.Search(len(w.covered), func(i int) bool { return w.covered[i][1] > idx })
		if i == len(w.covered) || idx < w.covered[i][0] {
			return 0, sum, false
		}
		v := w.baseSparse[idx]
		return v.kind, v.sum, true
	case w.baseAll != nil:
		kind, sum = w.baseAll.at(idx)
		return kind, sum, true
	}
	return 0, sum, true
}

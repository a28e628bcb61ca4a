package blockmap

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/dgraph-io/badger/v4"
)

// ErrOutsideAreas means a read of an AreaReader left the areas it was
// opened for.
var ErrOutsideAreas = errors.New("read outside the areas the disk was opened for")

// AreaReader reads chosen areas of one disk of a recovery point: its map
// holds only the blocks of those areas, each looked up in the index (a
// seek per block) instead of walking the disk's whole map as OpenDisk
// does. That is what a quick rollback of a few changed areas needs.
// Reads outside the areas fail with ErrOutsideAreas (never zeros taken
// for data). Blocks read are checked against their checksums as by
// DiskReader; the whole-map digest is not (the map is not read whole).
type AreaReader struct {
	dr     *DiskReader
	blocks [][2]int64 // sorted, merged block ranges [first, end)
	ra     *prefetcher
}

// OpenDiskAreas opens disk of p for reading the given byte areas
// (rounded out to whole blocks, clipped to the disk).
func (r *Repo) OpenDiskAreas(ctx context.Context, p Point, disk string, areas []Extent) (*AreaReader, error) {
	dr, err := r.newDiskReader(p, disk)
	if err != nil {
		return nil, err
	}
	blocks, _ := coveredBlocks(areas, dr.bs, dr.n)
	ar := &AreaReader{dr: dr, blocks: blocks}
	d := dr.disk
	sp := diskSpan(p, d)
	var ra prefetcher
	err = r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			vi := newVersionIter(txn, d.ID, false)
			defer vi.close()
			for _, br := range ar.blocks {
				for b := br[0]; b < br[1]; b++ {
					found, more, err := vi.seekNewest(uint64(b), sp)
					if err != nil || !more {
						return err
					}
					if !found {
						continue // a hole in the point
					}
					v, err := vi.value()
					if err != nil {
						return err
					}
					if v.kind == kindData {
						dr.m.add(b, vi.gen, v.crc)
						ra.add(dr, b, vi.gen)
					}
				}
			}
			return nil
		})
	})
	ra.finish(dr)
	if err != nil {
		ra.wait()
		_ = dr.Close()
		return nil, fmt.Errorf("open areas of disk %s of %s point %s: %w", disk, p.VM, p.ID, err)
	}
	dr.m.seal()
	ar.ra = &ra
	return ar, nil
}

// covered reports whether [off, off+n) lies inside the areas' blocks.
func (a *AreaReader) covered(off, n int64) bool {
	bs := a.dr.bs
	first, end := off/bs, (off+n+bs-1)/bs
	i := sort.Search(len(a.blocks), func(i int) bool { return a.blocks[i][1] > first })
	return i < len(a.blocks) && a.blocks[i][0] <= first && end <= a.blocks[i][1]
}

// ReadAt reads like DiskReader.ReadAt, inside the areas only.
func (a *AreaReader) ReadAt(p []byte, off int64) (int, error) {
	n := min(int64(len(p)), a.dr.disk.Size-off)
	if off < 0 || (n > 0 && !a.covered(off, n)) {
		return 0, fmt.Errorf("disk %s at offset %d (+%d): %w", a.dr.disk.Name, off, len(p), ErrOutsideAreas)
	}
	return a.dr.ReadAt(p, off)
}

// DataExtents lists the data extents inside the areas' blocks, merged.
func (a *AreaReader) DataExtents() []Extent { return a.dr.DataExtents() }

// Size is the disk's logical size in bytes.
func (a *AreaReader) Size() int64 { return a.dr.Size() }

// Close releases the reader's open delta images (after the read-ahead
// calls still being made).
func (a *AreaReader) Close() error {
	if a.ra != nil {
		a.ra.wait()
	}
	return a.dr.Close()
}

// prefetcher asks the kernel to read the blocks an AreaReader will be
// asked for (posix_fadvise WILLNEED) while the rest of the areas are
// still being looked up: a quick rollback's reads are scattered single
// blocks, mostly cold, and a sequential reader's readahead never starts
// for them. Consecutive blocks of one delta image go in one call. The
// calls are made by a goroutine of their own: WILLNEED submits the reads
// and blocks while the device queue is full, which must not hold up the
// lookups.
type prefetcher struct {
	first, n int64
	gen      uint32
	ch       chan [3]int64 // gen, first block, blocks
	done     chan struct{}
}

// add notes data block b of image gen.
func (p *prefetcher) add(dr *DiskReader, b int64, gen uint32) {
	if p.n > 0 && gen == p.gen && b == p.first+p.n {
		p.n++
		return
	}
	p.flush(dr)
	p.first, p.n, p.gen = b, 1, gen
}

// flush hands the pending range to the goroutine, starting it.
func (p *prefetcher) flush(dr *DiskReader) {
	if p.n == 0 {
		return
	}
	if p.ch == nil {
		p.ch, p.done = make(chan [3]int64, 256), make(chan struct{})
		go func() {
			defer close(p.done)
			for r := range p.ch {
				dr.willNeed(uint32(r[0]), r[1], r[2])
			}
		}()
	}
	p.ch <- [3]int64{int64(p.gen), p.first, p.n}
	p.n = 0
}

// finish sends the last range; wait returns when every call was made.
func (p *prefetcher) finish(dr *DiskReader) {
	p.flush(dr)
	if p.ch != nil {
		close(p.ch)
	}
}

func (p *prefetcher) wait() {
	if p.done != nil {
		<-p.done
	}
}

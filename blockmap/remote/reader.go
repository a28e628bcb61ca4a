package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/lru"
)

// DiskReader reads one disk of a remote point: an io.ReaderAt plus the
// data/hole map, like blockmap.DiskReader. Blocks are fetched with ranged
// GETs, authenticated, and kept in a bounded cache. Safe for concurrent use.
type DiskReader struct {
	r       *Remote
	ctx     context.Context
	point   blockmap.Point
	disk    manifestDisk
	bs      int64
	packs   []manifestPack
	entries []blockEntry           // the data blocks, sorted by block: sized by data, not by the disk
	cache   *lru.Cache[ID, []byte] // by block id: equal blocks share an entry
	// raWindow is how far ahead of a sequential reader blocks are
	// fetched (0: no read-ahead).
	raWindow int

	lastEnd atomic.Int64 // end of the previous read: sequential reads are detected by it
	raMu    sync.Mutex
	raNext  int                  // entries before it were handed to a read-ahead
	raBusy  int                  // read-aheads running
	pending map[ID]chan struct{} // block id → closed when the read-ahead fetching it is done
}

// BlockError names a block of a remote point that cannot be read.
type BlockError struct {
	VM, Point, Disk string
	Offset          int64
	Pack            string
	Err             error
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("remote VM %s point %s disk %s: block at offset %d (pack %s): %v", e.VM, e.Point, e.Disk, e.Offset, e.Pack, e.Err)
}

func (e *BlockError) Unwrap() error { return e.Err }

// SetReadCache makes every reader opened afterwards share one cache of
// decrypted blocks bounded to bytes (a mount's --cache-size).
func (r *Remote) SetReadCache(bytes int) {
	r.readCache = lru.New[ID, []byte](bytes)
	r.readCacheBytes = bytes
}

// readAheadMax bounds how far ahead of a sequential reader blocks are
// fetched: 32 MiB is four ranged GETs of up to 8 MiB (maxRun) in flight
// (see readAhead), enough to keep a store on a fast link busy. The window is at most a
// quarter of the block cache, so read-ahead never evicts what it fetched
// before it is read.
const readAheadMax = 32 << 20

// OpenDisk opens a disk of a remote point. cacheBytes bounds the blocks
// it keeps in memory (0: 64 MiB) unless SetReadCache set a shared cache.
// ctx bounds every read of the reader.
func (r *Remote) OpenDisk(ctx context.Context, vm, pointID, disk string, cacheBytes int) (*DiskReader, error) {
	m, err := r.manifest(ctx, vm, pointID)
	if err != nil {
		return nil, err
	}
	return r.openDisk(ctx, m, disk, cacheBytes)
}

func (r *Remote) openDisk(ctx context.Context, m *manifest, disk string, cacheBytes int) (*DiskReader, error) {
	var md *manifestDisk
	for i := range m.Disks {
		if m.Disks[i].Name == disk {
			md = &m.Disks[i]
		}
	}
	if md == nil {
		return nil, fmt.Errorf("remote point %s of %s has no disk %q: %w", m.Point.ID, m.Point.VM, disk, ErrNotFound)
	}
	if m.BlockSize <= 0 {
		return nil, fmt.Errorf("%w: block size %d", ErrFormat, m.BlockSize)
	}
	es, err := r.diskEntries(ctx, m, md)
	if err != nil {
		return nil, err
	}
	bs := int64(m.BlockSize)
	nb := (md.Size + bs - 1) / bs
	if k := len(es); k > 0 && es[k-1].Block >= nb {
		return nil, fmt.Errorf("%w: block %d past the end of disk %s", ErrFormat, es[k-1].Block, disk)
	}
	cache := r.readCache
	if cache == nil {
		if cacheBytes <= 0 {
			cacheBytes = 64 << 20
		}
		cache = lru.New[ID, []byte](cacheBytes)
	} else {
		cacheBytes = r.readCacheBytes
	}
	d := *md
	d.Blocks = nil // decoded into es: do not keep both
	dr := &DiskReader{r: r, ctx: ctx, point: m.Point, disk: d, bs: bs, packs: m.Packs, entries: es, cache: cache,
		raWindow: min(readAheadMax, cacheBytes/4), pending: map[ID]chan struct{}{}}
	dr.lastEnd.Store(-1)
	return dr, nil
}

// search returns the index of the first entry at or after block b.
func (dr *DiskReader) search(b int64) int {
	return sort.Search(len(dr.entries), func(i int) bool { return dr.entries[i].Block >= b })
}

// Size is the disk's size in bytes.
func (dr *DiskReader) Size() int64 { return dr.disk.Size }

// Point is the point the reader shows.
func (dr *DiskReader) Point() blockmap.Point { return dr.point }

// Close releases the reader.
func (dr *DiskReader) Close() error { return nil }

// ReadAt reads the disk; blocks that fail authentication fail the read
// with a *BlockError wrapping ErrCorrupt, never wrong bytes.
func (dr *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= dr.disk.Size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), dr.disk.Size)
	// Fetch the blocks not cached, coalesced, before copying.
	first := dr.search(off / dr.bs)
	last := first // entries[first:last] are the data blocks of the read
	for last < len(dr.entries) && dr.entries[last].Block*dr.bs < end {
		last++
	}
	dr.readAhead(off, end, last)
	// got holds every block of the read once found: a block found in the
	// cache here may be evicted before it is copied.
	got := make(map[int64][]byte, last-first)
	var need []blockEntry
	for _, e := range dr.entries[first:last] {
		if data, ok := dr.cache.Get(e.ID); ok {
			got[e.Block] = data
			continue
		}
		// Look again whether or not a read-ahead was waited for: one may
		// have cached the block (and ended) since the first look.
		dr.waitPending(e.ID)
		if data, ok := dr.cache.Get(e.ID); ok {
			got[e.Block] = data
			continue
		}
		need = append(need, e)
	}
	var mu sync.Mutex
	if len(need) > 0 {
		err := dr.r.fetchBlobs(dr.ctx, dr.packs, need, func(e blockEntry, data []byte, err error) error {
			if err != nil {
				return &BlockError{VM: dr.point.VM, Point: dr.point.ID, Disk: dr.disk.Name, Offset: e.Block * dr.bs, Pack: dr.packs[e.Pack].ID, Err: err}
			}
			mu.Lock()
			got[e.Block] = data
			mu.Unlock()
			dr.cache.Add(e.ID, data, len(data))
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	n := 0
	k := first
	for pos := off; pos < end; {
		b := pos / dr.bs
		bend := min((b+1)*dr.bs, end)
		dst := p[pos-off : bend-off]
		if k == last || dr.entries[k].Block != b {
			clear(dst)
		} else {
			k++
			data, ok := got[b]
			if !ok {
				return n, fmt.Errorf("internal error: block %d not fetched", b)
			}
			in := pos - b*dr.bs
			c := copy(dst, data[min(in, int64(len(data))):])
			clear(dst[c:])
		}
		n += len(dst)
		pos = bend
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readAhead starts fetching the blocks after entries[:last] in the
// background when reads are sequential (a read starting within 2 MiB of
// where the previous one ended: the kernel may hand in a few FUSE reads
// out of order). Blocks a read-ahead fetches are waited for, not fetched
// twice (waitPending); a failed read-ahead only leaves its blocks to the
// reads, which fetch them again and report the error.
func (dr *DiskReader) readAhead(off, end int64, last int) {
	prev := dr.lastEnd.Swap(end)
	if dr.raWindow <= 0 || prev < 0 || off < prev-2<<20 || off > prev+2<<20 {
		return
	}
	win := max(1, dr.raWindow/int(dr.bs))
	dr.raMu.Lock()
	from := max(dr.raNext, last)
	to := min(len(dr.entries), last+win)
	// Refill once a quarter of the window is read, so that about four
	// ranged GETs (a quarter window each: maxRun for the full window)
	// stay in flight all along; refilling at half the window let the
	// depth swing between two GETs and four.
	if dr.raBusy >= 4 || from >= to || from > last+win-max(1, win/4) {
		dr.raMu.Unlock()
		return
	}
	var es []blockEntry
	var chans []chan struct{}
	for _, e := range dr.entries[from:to] {
		if _, ok := dr.pending[e.ID]; ok {
			continue
		}
		if _, ok := dr.cache.Get(e.ID); ok {
			continue
		}
		ch := make(chan struct{})
		dr.pending[e.ID] = ch
		es = append(es, e)
		chans = append(chans, ch)
	}
	dr.raNext = to
	if len(es) == 0 {
		dr.raMu.Unlock()
		return
	}
	dr.raBusy++
	dr.raMu.Unlock()
	go func() {
		_ = dr.r.fetchBlobs(dr.ctx, dr.packs, es, func(e blockEntry, data []byte, err error) error {
			if err == nil {
				dr.cache.Add(e.ID, data, len(data))
			}
			dr.donePending(e.ID)
			return nil
		})
		dr.raMu.Lock()
		dr.raBusy--
		for i, e := range es {
			if dr.pending[e.ID] == chans[i] {
				delete(dr.pending, e.ID)
				close(chans[i])
			}
		}
		dr.raMu.Unlock()
	}()
}

// donePending ends the wait for block id.
func (dr *DiskReader) donePending(id ID) {
	dr.raMu.Lock()
	if ch, ok := dr.pending[id]; ok {
		delete(dr.pending, id)
		close(ch)
	}
	dr.raMu.Unlock()
}

// waitPending waits for a read-ahead fetching block id, if one is.
func (dr *DiskReader) waitPending(id ID) {
	dr.raMu.Lock()
	ch, ok := dr.pending[id]
	dr.raMu.Unlock()
	if !ok {
		return
	}
	select {
	case <-ch:
	case <-dr.ctx.Done():
	}
}

// NextData returns the first offset >= off that holds data, or
// blockmap.ErrNoData.
func (dr *DiskReader) NextData(off int64) (int64, error) {
	off = max(off, 0)
	if off >= dr.disk.Size {
		return 0, blockmap.ErrNoData
	}
	k := dr.search(off / dr.bs)
	if k == len(dr.entries) {
		return 0, blockmap.ErrNoData
	}
	return max(off, dr.entries[k].Block*dr.bs), nil
}

// NextHole returns the first offset >= off inside a hole (the end counts).
func (dr *DiskReader) NextHole(off int64) (int64, error) {
	off = max(off, 0)
	if off >= dr.disk.Size {
		return 0, blockmap.ErrNoData
	}
	b := off / dr.bs
	for k := dr.search(b); k < len(dr.entries) && dr.entries[k].Block == b; k++ {
		b++
	}
	return min(max(off, b*dr.bs), dr.disk.Size), nil
}

// DataBytes is the number of bytes in data extents.
func (dr *DiskReader) DataBytes() int64 {
	var n int64
	for _, e := range dr.DataExtents() {
		n += e.Length
	}
	return n
}

// DataExtents lists the data extents in order, merged.
func (dr *DiskReader) DataExtents() []blockmap.Extent {
	var out []blockmap.Extent
	for _, e := range dr.entries {
		start := e.Block * dr.bs
		l := min(dr.bs, dr.disk.Size-start)
		if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == start {
			out[n-1].Length += l
		} else {
			out = append(out, blockmap.Extent{Offset: start, Length: l})
		}
	}
	return out
}

// maxRun bounds one coalesced ranged GET.
const maxRun = 8 << 20

// blobScratch is the room after a ranged GET's bytes in its buffer where
// the blobs are decrypted (a block of up to 1 MiB; larger ones grow a
// scratch buffer of their own).
const blobScratch = 1 << 20

// fetchBlobs fetches the blobs of es (any order) with ranged GETs that
// cover neighbouring blobs of one pack at once, four in flight, and hands
// each authenticated block (or its error) to fn. A GET that fails hands
// its error to every block it covers. fn's error stops the fetch.
func (r *Remote) fetchBlobs(ctx context.Context, packs []manifestPack, es []blockEntry, fn func(e blockEntry, data []byte, err error) error) error {
	es = append([]blockEntry(nil), es...)
	sort.Slice(es, func(i, j int) bool {
		if es[i].Pack != es[j].Pack {
			return es[i].Pack < es[j].Pack
		}
		return es[i].Off < es[j].Off
	})
	type run struct{ es []blockEntry }
	var runs []run
	for i := 0; i < len(es); {
		j := i + 1
		end := int64(es[i].Off) + int64(es[i].Len)
		// Neighbours (a gap of up to 64 KiB is read through) of one pack
		// share a GET; a blob two blocks share appears twice.
		for j < len(es) && es[j].Pack == es[i].Pack && int64(es[j].Off) <= end+64<<10 &&
			int64(es[j].Off)+int64(es[j].Len)-int64(es[i].Off) <= maxRun {
			end = max(end, int64(es[j].Off)+int64(es[j].Len))
			j++
		}
		runs = append(runs, run{es[i:j]})
		i = j
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, ru := range runs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(ru run) {
			defer wg.Done()
			defer func() { <-sem }()
			first := ru.es[0]
			start := int64(first.Off)
			end := start
			for _, e := range ru.es {
				end = max(end, int64(e.Off)+int64(e.Len))
			}
			pk := packs[first.Pack]
			r.blobGets.Add(1)
			r.blobsFetched.Add(int64(len(ru.es)))
			bufp, _ := r.getBufs.Get().(*[]byte)
			if bufp == nil {
				b := make([]byte, maxRun+blobScratch)
				bufp = &b
			}
			defer r.getBufs.Put(bufp) // blocks are copied out into their own buffers
			data, gerr := r.st.getInto(ctx, packPrefix+pk.ID, pk.Version, start, end-start, *bufp)
			if gerr != nil && ctx.Err() != nil {
				fail(ctx.Err())
				return
			}
			// Blobs are decrypted in the buffer's tail, past the run.
			scratch := (*bufp)[min(end-start, int64(len(*bufp))):]
			var (
				prev    *blockEntry
				prevBlk []byte
				prevErr error
			)
			for i, e := range ru.es {
				var blk []byte
				err := gerr
				switch {
				case err != nil:
				case prev != nil && prev.ID == e.ID && prev.Off == e.Off && prev.Len == e.Len:
					// Two blocks of the read share the blob: opened once.
					blk, err = prevBlk, prevErr
				default:
					blk, err = r.openBlob(e.ID, data[int64(e.Off)-start:int64(e.Off)+int64(e.Len)-start], e.Raw, &scratch)
					prev, prevBlk, prevErr = &ru.es[i], blk, err
				}
				if ferr := fn(e, blk, err); ferr != nil {
					fail(ferr)
					return
				}
			}
		}(ru)
	}
	wg.Wait()
	return firstErr
}

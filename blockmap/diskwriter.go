package blockmap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DiskOptions describe one disk of a session.
type DiskOptions struct {
	// Full means the caller supplies every block: blocks it never writes are
	// zero. Otherwise unwritten blocks keep their content from the previous
	// point (an incremental backup driven by changed-block tracking).
	Full bool
	// FullReason says why a full backup was chosen (kept in the point).
	FullReason string
	Meta       json.RawMessage
	// Changed, for an incremental (not Full), are the areas the caller
	// will write, as changed-block tracking reports them. Then only their
	// blocks' previous versions are read from the index (not the whole
	// disk's); a block written outside them is stored as changed.
	Changed []Extent
	// Content, when set, is shown every data block this point stores for
	// the disk (changed and not zero; never an unchanged or zero block),
	// and its Figures are kept with the point (DiskInfo.Content).
	Content ContentMeter
}

// ContentMeter looks at the data blocks a point stores for a disk, for
// figures kept with the point (backupd/anomaly measures how many of them
// look encrypted). Observe is called from several goroutines at once and
// must not keep the block; Figures is called once, when the point is
// committed.
type ContentMeter interface {
	Observe(block []byte)
	Figures() json.RawMessage
}

// DiskWriter receives the blocks of one disk of a session. Its methods are
// safe for concurrent use.
type DiskWriter struct {
	s        *Session
	name     string
	id       uint32
	size     int64
	bs       int
	nblocks  int64
	opts     DiskOptions
	baseSize int64
	hasBase  bool
	// base is the span of the base point's version of this disk (when
	// hasBase); lineage is where this point's history of the disk begins.
	baseSpan span
	baseDisk DiskInfo
	lineage  uint32
	// reusedID: the disk id held another life of the disk before this
	// point (a disk back after points without it): FormatLineage.
	reusedID bool
	baseAll  *baseMap // the previous versions of every block, when loaded (loadBase)
	// With DiskOptions.Changed: the previous versions of just the blocks
	// in covered (sorted block ranges [first, end)); see base.
	baseSparse map[int64]blockValue
	covered    [][2]int64
	touched    blockRanges // blocks the caller wrote

	fileOnce sync.Once
	file     *imageFile
	fileErr  error

	mu      sync.Mutex
	entries []entry

	stored, read, changed, zeroed atomic.Int64
	meta                          json.RawMessage
}

type entry struct {
	block uint64
	val   blockValue
}

// loadBase reads the base point's version of every block: the newest
// version in its span (after the sweep and garbage collection nothing
// newer exists).
func (w *DiskWriter) loadBase(db *badger.DB) error {
	n := w.nblocks
	if bn := (w.baseSize + int64(w.bs) - 1) / int64(w.bs); bn > n {
		n = bn
	}
	w.baseAll = &baseMap{}
	return db.View(func(txn *badger.Txn) error {
		vi := newVersionIter(txn, w.id, true)
		defer vi.close()
		for vi.nextNewest(w.baseSpan, n) {
			bv, err := vi.value()
			if err != nil {
				return err
			}
			if bv.kind == kindData || bv.kind == kindZero {
				w.baseAll.add(int64(vi.block), bv.kind, bv.sum)
			}
		}
		return vi.err
	})
}

// Name is the disk's name.
func (w *DiskWriter) Name() string { return w.name }

// Size is the disk's logical size.
func (w *DiskWriter) Size() int64 { return w.size }

// BlockSize is the repository block size.
func (w *DiskWriter) BlockSize() int { return w.bs }

// Full reports whether the caller must supply every block, and why.
func (w *DiskWriter) Full() (bool, string) { return w.opts.Full, w.opts.FullReason }

// SetMeta replaces the disk's free-form metadata.
func (w *DiskWriter) SetMeta(meta json.RawMessage) {
	w.mu.Lock()
	w.meta = meta
	w.mu.Unlock()
}

// AddBytesRead counts bytes read from the source for this disk.
func (w *DiskWriter) AddBytesRead(n int64) { w.read.Add(n) }

// BlockLen is the length of block idx: the block size, shorter at the end.
func (w *DiskWriter) BlockLen(idx int64) int {
	if rest := w.size - idx*int64(w.bs); rest < int64(w.bs) {
		return int(rest)
	}
	return w.bs
}

// WriteAt stores p at off. off must be block aligned and p must cover
// whole blocks, except that the last block of the disk may be short.
func (w *DiskWriter) WriteAt(p []byte, off int64) (int, error) {
	if off%int64(w.bs) != 0 {
		return 0, fmt.Errorf("disk %q: %w: write at %d is not aligned to the %d-byte block", w.name, ErrInvalid, off, w.bs)
	}
	n := 0
	for n < len(p) {
		idx := (off + int64(n)) / int64(w.bs)
		if idx >= w.nblocks {
			return n, fmt.Errorf("disk %q: %w: write at %d beyond the disk's end (%d)", w.name, ErrInvalid, off+int64(n), w.size)
		}
		l := w.BlockLen(idx)
		if len(p)-n < l {
			return n, fmt.Errorf("disk %q: %w: write of %d bytes at %d ends inside a block", w.name, ErrInvalid, len(p), off)
		}
		if err := w.WriteBlock(idx, p[n:n+l]); err != nil {
			return n, err
		}
		n += l
	}
	return n, nil
}

var zeroBlock = make([]byte, 1<<20)

func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// WriteBlock stores block idx. data must be exactly BlockLen(idx) bytes.
// A block that is all zero is recorded as zero and never written; a block
// whose hash equals the previous point's is not stored again.
func (w *DiskWriter) WriteBlock(idx int64, data []byte) error {
	if idx < 0 || idx >= w.nblocks {
		return fmt.Errorf("disk %q: %w: block %d outside the disk (%d blocks)", w.name, ErrInvalid, idx, w.nblocks)
	}
	if len(data) != w.BlockLen(idx) {
		return fmt.Errorf("disk %q: %w: block %d has %d bytes, want %d", w.name, ErrInvalid, idx, len(data), w.BlockLen(idx))
	}
	return w.WriteBlocks(idx, data)
}

// WriteBlocks stores consecutive blocks starting at block idx: data holds
// whole blocks, except that the disk's last block may be short. It does
// what WriteBlock does for each block, but writes runs of stored blocks
// with one call, so a large read costs few writes.
func (w *DiskWriter) WriteBlocks(idx int64, data []byte) error {
	bs := int64(w.bs)
	n := (int64(len(data)) + bs - 1) / bs
	if idx < 0 || idx+n > w.nblocks {
		return fmt.Errorf("disk %q: %w: blocks %d..%d outside the disk (%d blocks)", w.name, ErrInvalid, idx, idx+n-1, w.nblocks)
	}
	if int64(len(data)) != (n-1)*bs+int64(w.BlockLen(idx+n-1)) {
		return fmt.Errorf("disk %q: %w: %d bytes at block %d do not end at a block boundary or the disk's end", w.name, ErrInvalid, len(data), idx)
	}
	var adds []entry
	var runStart int64 = -1 // first block of the pending run of stored blocks
	flush := func(end int64) error {
		if runStart < 0 {
			return nil
		}
		f, err := w.imageFile()
		if err != nil {
			return err
		}
		lo, hi := (runStart-idx)*bs, min((end-idx)*bs, int64(len(data)))
		if err := f.WriteAt(data[lo:hi], runStart*bs); err != nil {
			// A PathError (same text) so that the CLI can name the full filesystem.
			return fmt.Errorf("disk %q: %w", w.name, &fs.PathError{Op: fmt.Sprintf("write blocks %d..%d to", runStart, end-1), Path: f.Name(), Err: fileSizeAdvice(err)})
		}
		w.stored.Add(hi - lo)
		runStart = -1
		return nil
	}
	var pad []byte
	w.touched.add(idx, idx+n)
	for i := int64(0); i < n; i++ {
		b := idx + i
		block := data[i*bs : min((i+1)*bs, int64(len(data)))]
		baseKind, baseSum, known := w.base(b)
		store := false
		if isZero(block) {
			if baseKind == kindData || !known {
				adds = append(adds, entry{block: uint64(b), val: blockValue{kind: kindZero}})
				w.zeroed.Add(1)
			}
		} else {
			full := block
			if int64(len(block)) < bs {
				if pad == nil {
					pad = make([]byte, bs)
				}
				clear(pad)
				copy(pad, block)
				full = pad
			}
			val := blockValue{kind: kindData, sum: w.s.repo.sum(full)}
			if !(baseKind == kindData && baseSum == val.sum) {
				val.crc = crc32.Checksum(full, castagnoli)
				adds = append(adds, entry{block: uint64(b), val: val})
				w.changed.Add(1)
				store = true
				if w.opts.Content != nil {
					w.opts.Content.Observe(block)
				}
			}
		}
		switch {
		case store && runStart < 0:
			runStart = b
		case !store:
			if err := flush(b); err != nil {
				return err
			}
		}
	}
	if err := flush(idx + n); err != nil {
		return err
	}
	if len(adds) > 0 {
		w.mu.Lock()
		w.entries = append(w.entries, adds...)
		w.mu.Unlock()
	}
	return nil
}

func (w *DiskWriter) imageFile() (*imageFile, error) {
	w.fileOnce.Do(func() {
		path := w.s.repo.imagePath(w.id, w.s.gen)
		w.file, w.fileErr = createImageFile(path)
		if w.fileErr != nil {
			w.fileErr = fmt.Errorf("disk %q: create delta image: %w", w.name, w.fileErr)
		}
	})
	return w.file, w.fileErr
}

// finalEntries returns the index entries of this disk: the last write of
// each block, plus zero versions for blocks a full backup did not supply.
func (w *DiskWriter) finalEntries() []entry {
	es := w.entries
	slices.SortStableFunc(es, func(a, b entry) int {
		switch {
		case a.block < b.block:
			return -1
		case a.block > b.block:
			return 1
		}
		return 0
	})
	out := es[:0]
	for i, e := range es {
		if i+1 < len(es) && es[i+1].block == e.block {
			continue // a later write of the same block wins
		}
		out = append(out, e)
	}
	if w.opts.Full && w.baseAll != nil {
		for _, r := range w.baseAll.runs {
			if r.kind != kindData {
				continue
			}
			for b := r.first; b < r.end(); b++ {
				if b < w.nblocks && w.touched.contains(b) {
					continue
				}
				out = append(out, entry{block: uint64(b), val: blockValue{kind: kindZero}})
				w.zeroed.Add(1)
			}
		}
	}
	return out
}

func (w *DiskWriter) info() DiskInfo {
	w.mu.Lock()
	meta := w.meta
	w.mu.Unlock()
	return DiskInfo{
		Name: w.name, ID: w.id, Size: w.size, BlockSize: w.bs,
		StoredBytes: w.stored.Load(), ReadBytes: w.read.Load(),
		ChangedBlocks: w.changed.Load(), ZeroedBlocks: w.zeroed.Load(),
		Full: w.opts.Full, FullReason: w.opts.FullReason, Meta: meta, Lineage: w.lineage,
		Content: w.content(),
	}
}

// content is the content meter's figures, when the disk has one.
func (w *DiskWriter) content() json.RawMessage {
	if w.opts.Content == nil {
		return nil
	}
	return w.opts.Content.Figures()
}

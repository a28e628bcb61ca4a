package blockmap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PointOptions describe the recovery point a session will commit.
type PointOptions struct {
	// Time is the moment the data was captured (the snapshot); zero means now.
	Time time.Time
	// Consistency is the point's label (ConsistencyQuiesced, ConsistencyCrash, ...).
	Consistency string
	// Meta is free-form JSON kept with the point (info.json shows it).
	Meta json.RawMessage
	// Purpose names the writer in "in use by" errors, e.g. "cairn import".
	Purpose string
}

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
}

// Session writes one new recovery point of a VM. Nothing it writes is
// visible until Commit; Abort (or a crash) leaves no trace after the next
// sweep. A session holds the VM's writer lock until Commit or Abort.
type Session struct {
	repo    *Repo
	vm      string
	gen     uint32
	opts    PointOptions
	started time.Time
	lock    *vmLock
	base    *Point

	mu    sync.Mutex
	disks []*DiskWriter
	done  bool
}

// BeginPoint starts a new recovery point of vm. It fails with ErrInUse when
// another writer holds the VM.
func (r *Repo) BeginPoint(ctx context.Context, vm string, opts PointOptions) (*Session, error) {
	if err := ValidateName("VM", vm); err != nil {
		return nil, err
	}
	if opts.Purpose == "" {
		opts.Purpose = "cairn backup"
	}
	if opts.Consistency == "" {
		opts.Consistency = ConsistencyCrash
	}
	lock, err := r.lockVM(vm, opts.Purpose)
	if err != nil {
		return nil, err
	}
	s := &Session{repo: r, vm: vm, opts: opts, started: time.Now().UTC(), lock: lock}
	if s.opts.Time.IsZero() {
		s.opts.Time = s.started
	}
	// A read-only look at the index is enough unless an interrupted
	// writer left something to sweep: then the sweep opens it read-write.
	var rec vmRecord
	var dirty bool
	read := func(db *badger.DB) error {
		pts, err := readPoints(db, vm)
		if err != nil {
			return err
		}
		if len(pts) > 0 {
			b := pts[len(pts)-1]
			s.base = &b
		}
		return db.View(func(txn *badger.Txn) error {
			if _, err := getJSON(txn, vmKey(vm), &rec); err != nil {
				return fmt.Errorf("read VM record: %w", err)
			}
			dirty, err = vmNeedsSweep(txn, vm)
			return err
		})
	}
	err = r.view(ctx, read)
	if err == nil && !dirty {
		_, dirty, err = r.readSessionFile(vm)
	}
	if err == nil && dirty {
		s.base = nil
		err = r.update(ctx, func(db *badger.DB) error {
			if err := r.sweepVM(db, vm); err != nil {
				return err
			}
			return read(db)
		})
	}
	if err == nil {
		s.gen = max(rec.NextGen, 1)
		if s.base != nil && s.base.Gen >= s.gen {
			s.gen = s.base.Gen + 1
		}
		err = r.writeSessionFile(sessionRecord{VM: vm, Gen: s.gen, PID: os.Getpid(), Started: s.started})
	}
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("begin recovery point of %s: %w", vm, err)
	}
	return s, nil
}

// VM is the session's VM.
func (s *Session) VM() string { return s.vm }

// Gen is the generation the session writes.
func (s *Session) Gen() uint32 { return s.gen }

// Base is the point the session builds on (the VM's latest), if any.
func (s *Session) Base() (Point, bool) {
	if s.base == nil {
		return Point{}, false
	}
	return *s.base, true
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

// AddDisk adds a disk of the given logical size to the session. A disk
// whose size differs from the previous point, or that is new, is always
// written in full (the returned writer says why).
func (s *Session) AddDisk(ctx context.Context, name string, size int64, opts DiskOptions) (*DiskWriter, error) {
	if err := ValidateName("disk", name); err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, fmt.Errorf("disk %q: %w: size %d must be positive", name, ErrInvalid, size)
	}
	if size > MaxDiskSize {
		return nil, fmt.Errorf("disk %q: %w: size %d bytes is larger than the largest disk cairn stores (%d bytes, 8 PiB)", name, ErrInvalid, size, MaxDiskSize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil, fmt.Errorf("disk %q: session already ended", name)
	}
	for _, d := range s.disks {
		if d.name == name {
			return nil, fmt.Errorf("disk %q: %w: given twice", name, ErrInvalid)
		}
	}
	r := s.repo
	bs := r.cfg.BlockSize
	w := &DiskWriter{s: s, name: name, size: size, bs: bs, nblocks: (size + int64(bs) - 1) / int64(bs), opts: opts, meta: opts.Meta}
	if s.base != nil {
		if d, ok := s.base.Disk(name); ok {
			w.hasBase, w.baseSize = true, d.Size
			w.baseSpan, w.baseDisk, w.lineage = diskSpan(*s.base, d), d, d.Lineage
		}
	}
	if !w.hasBase {
		// A disk new to the VM, or back after points without it: its
		// history begins here, and whatever an earlier disk of the same
		// id left in the index is not part of it.
		w.lineage = s.gen
	}
	switch {
	case !w.hasBase:
		w.opts.Full = true
		if w.opts.FullReason == "" {
			w.opts.FullReason = "first backup of this disk"
		}
	case w.baseSize != size:
		w.opts.Full = true
		w.opts.FullReason = fmt.Sprintf("disk size changed from %d to %d bytes", w.baseSize, size)
	}
	// An existing disk needs only a read of the index; a new one gets an id.
	err := r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			var rec vmRecord
			if _, err := getJSON(txn, vmKey(s.vm), &rec); err != nil {
				return fmt.Errorf("read VM record: %w", err)
			}
			w.id = rec.Disks[name]
			return nil
		})
	})
	if err == nil && w.id != 0 && w.hasBase {
		if !w.opts.Full && opts.Changed != nil {
			covered, n := coveredBlocks(opts.Changed, int64(bs), w.nblocks)
			if n <= w.nblocks/sparseBaseLimit {
				w.covered = covered
				err = r.view(ctx, w.loadSparseBase)
			}
		}
		if err == nil && w.baseSparse == nil {
			err = r.view(ctx, w.loadBase)
		}
	}
	if err == nil && w.id == 0 {
		err = r.update(ctx, func(db *badger.DB) error {
			return db.Update(func(txn *badger.Txn) error {
				rec := vmRecord{Name: s.vm, NextGen: s.gen}
				if _, err := getJSON(txn, vmKey(s.vm), &rec); err != nil {
					return fmt.Errorf("read VM record: %w", err)
				}
				if rec.Disks == nil {
					rec.Disks = map[string]uint32{}
				}
				id, err := nextDiskID(txn)
				if err != nil {
					return fmt.Errorf("allocate disk id: %w", err)
				}
				rec.Disks[name] = id
				if err := setJSON(txn, vmKey(s.vm), rec); err != nil {
					return err
				}
				w.id = id
				return setJSON(txn, diskKey(id), map[string]any{"vm": s.vm, "name": name, "id": id})
			})
		})
	}
	if err != nil {
		return nil, fmt.Errorf("add disk %q to %s: %w", name, s.vm, err)
	}
	if err := os.MkdirAll(r.imageDir(w.id), 0o755); err != nil {
		return nil, fmt.Errorf("add disk %q: %w", name, err)
	}
	s.disks = append(s.disks, w)
	return w, nil
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
			return fmt.Errorf("disk %q: write blocks %d..%d to %s: %w", w.name, runStart, end-1, f.Name(), fileSizeAdvice(err))
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
	}
}

// Commit makes the point visible: delta images are synced, index entries
// written, and the catalog record committed in one transaction. After an
// error the session is still open and must be aborted.
func (s *Session) Commit(ctx context.Context) (Point, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return Point{}, errors.New("commit: session already ended")
	}
	if len(s.disks) == 0 {
		return Point{}, fmt.Errorf("commit point of %s: %w: no disks", s.vm, ErrInvalid)
	}
	// The delta images are made durable while the index is being opened;
	// nothing is written to the index before they are.
	synced := make(chan error, 1)
	go func() { synced <- s.syncImages() }()
	waited := false
	p := Point{VM: s.vm, Gen: s.gen, Time: s.opts.Time.UTC(), Consistency: s.opts.Consistency, Started: s.started, Meta: s.opts.Meta}
	err := s.repo.update(ctx, func(db *badger.DB) error {
		waited = true
		if err := <-synced; err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		wb := db.NewWriteBatch()
		defer wb.Cancel()
		var walk []int // disks whose map digest is computed from the index
		for i, w := range s.disks {
			es := w.finalEntries()
			for _, e := range es {
				if err := wb.Set(blockKey(w.id, e.block, s.gen), e.val.encode()); err != nil {
					return fmt.Errorf("write index entries of disk %q: %w", w.name, err)
				}
			}
			info := w.info()
			if d, ok := w.digestFrom(es); ok {
				info.DataBlocks, info.MapDigest = d.n, d.String()
			} else {
				walk = append(walk, i)
			}
			p.Disks = append(p.Disks, info)
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("write index entries: %w", err)
		}
		if err := db.View(func(txn *badger.Txn) error {
			for _, i := range walk {
				d, err := digestOf(txn, p, p.Disks[i], int64(s.repo.cfg.BlockSize))
				if err != nil {
					return fmt.Errorf("digest of the block map of disk %q: %w", p.Disks[i].Name, err)
				}
				p.Disks[i].DataBlocks, p.Disks[i].MapDigest = d.n, d.String()
			}
			return nil
		}); err != nil {
			return err
		}
		err := db.Update(func(txn *badger.Txn) error {
			pts, err := readPoints(db, s.vm)
			if err != nil {
				return err
			}
			p.ID = uniquePointID(p.Time, pts)
			p.Committed = time.Now().UTC()
			if err := setJSON(txn, vmGenKey(prefixPoint, s.vm, s.gen), p); err != nil {
				return err
			}
			rec := vmRecord{Name: s.vm, Disks: map[string]uint32{}}
			if _, err := getJSON(txn, vmKey(s.vm), &rec); err != nil {
				return fmt.Errorf("read VM record: %w", err)
			}
			rec.Name = s.vm
			rec.NextGen = max(rec.NextGen, s.gen+1)
			return setJSON(txn, vmKey(s.vm), rec)
		})
		if err == nil {
			s.repo.bumpCatalogSeq() // under the exclusive lock, like every writer of catalog.seq
		}
		return err
	})
	if err != nil {
		if !waited {
			<-synced // the index could not be opened: let the sync end before Abort closes the files
		}
		return Point{}, fmt.Errorf("commit point of %s: %w", s.vm, err)
	}
	// The point is committed: a session file left behind by a crash here
	// names a generation that has a point, and the next sweep only removes it.
	if err := s.repo.removeSessionFile(s.vm); err != nil {
		s.repo.log.Warn("cannot remove the session file of a committed point; the next backup removes it", "vm", s.vm, "err", err)
	}
	s.finish()
	return p, nil
}

// syncImages makes the session's delta images and their directories durable.
func (s *Session) syncImages() error {
	for _, w := range s.disks {
		if w.file != nil {
			if err := w.file.Sync(); err != nil {
				return fmt.Errorf("sync delta image of disk %q: %w", w.name, err)
			}
		}
		if err := syncDir(s.repo.imageDir(w.id)); err != nil {
			return fmt.Errorf("sync image directory: %w", err)
		}
	}
	return nil
}

// Abort discards the session: its delta images and session record are
// removed. It is safe to call after Commit (then it does nothing).
func (s *Session) Abort(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	defer s.finish()
	// Release the space first: the index may need it to record the sweep
	// (an abort after "no space left on device" is the common case).
	for _, w := range s.disks {
		if w.file != nil {
			w.file.Close()
			if err := os.Remove(w.file.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.repo.log.Warn("cannot remove delta image of an aborted backup", "path", w.file.Name(), "err", err)
			}
			w.file = nil
		}
	}
	return s.repo.update(context.WithoutCancel(ctx), func(db *badger.DB) error {
		return s.repo.sweepVM(db, s.vm)
	})
}

func (s *Session) finish() {
	for _, w := range s.disks {
		if w.file != nil {
			w.file.Close()
		}
	}
	s.done = true
	s.lock.release()
}

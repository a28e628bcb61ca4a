package blockmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

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
	// Attachments are named files committed with the point, as if given
	// to Session.Attach.
	Attachments map[string][]byte
	// ID, when set, is the point's id instead of one made from Time: a
	// point pulled from a remote keeps its id (two points of one second
	// are T and T-2, and pulling T-2 alone must not name it T).
	// BeginPoint and Commit fail with ErrPointExists when the VM already
	// has a point of that id.
	ID string
	// Judge, when set, is called as the point is committed, with the
	// point as it will be recorded (disks and their Content figures
	// filled in) and the VM's committed points before it (read in the
	// same transaction: no extra index open); what it returns is kept as
	// Point.Verdict. It must not block: it runs under the index's
	// exclusive lock.
	Judge func(p Point, earlier []Point) json.RawMessage
}

// latestRef is the point reference that means the newest point.
const latestRef = "latest"

// ErrPointExists: the VM already has a point of the id PointOptions.ID asks for.
var ErrPointExists = errors.New("the VM already has a point of that id")

// Session writes one new recovery point of a VM. Nothing it writes is
// visible until Commit; Abort (or a crash) leaves no trace after the next
// sweep. A session holds the VM's writer lock until Commit or Abort.
type Session struct {
	repo    *Repo
	vm      string
	gen     uint32
	opts    PointOptions
	started time.Time
	lock    *VMLock
	base    *Point

	mu     sync.Mutex
	disks  []*DiskWriter
	attach map[string][]byte // Attach: name -> data, stored by Commit
	done   bool
}

// BeginPoint starts a new recovery point of vm. It fails with ErrInUse when
// another writer holds the VM.
func (r *Repo) BeginPoint(ctx context.Context, vm string, opts PointOptions) (*Session, error) {
	if err := ValidateName("VM", vm); err != nil {
		return nil, err
	}
	if opts.ID != "" && (opts.ID == latestRef || ValidateName("point", opts.ID) != nil) {
		return nil, fmt.Errorf("begin recovery point of %s: point id %q: %w", vm, opts.ID, ErrInvalid)
	}
	if opts.Purpose == "" {
		opts.Purpose = "cairn backup"
	}
	if opts.Consistency == "" {
		opts.Consistency = ConsistencyCrash
	}
	lock, err := r.LockVM(ctx, vm, opts.Purpose)
	if err != nil {
		return nil, err
	}
	if opts.ID != "" {
		// Checked under the VM's lock: a second writer of the same id
		// (two pulls at once) finds the first one's point here.
		if err := r.checkPointID(ctx, vm, opts.ID); err != nil {
			lock.Release()
			return nil, err
		}
	}
	s := &Session{repo: r, vm: vm, opts: opts, started: time.Now().UTC(), lock: lock}
	for name, data := range opts.Attachments {
		if err := s.Attach(name, data); err != nil {
			lock.Release()
			return nil, fmt.Errorf("begin recovery point of %s: %w", vm, err)
		}
	}
	if s.opts.Time.IsZero() {
		s.opts.Time = s.started
	}
	// A read-only look at the index is enough unless an interrupted
	// writer left something to sweep: then the sweep opens it read-write.
	var rec vmRecord
	var dirty bool
	read := func(db *badger.DB) error {
		pts, err := r.readPoints(db, vm)
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
		err = r.writeSessionFile(sessionRecord{VM: vm, Gen: s.gen, PID: os.Getpid(), Started: s.started, Purpose: opts.Purpose})
	}
	if err != nil {
		lock.Release()
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
			w.reusedID = w.id != 0 && !w.hasBase
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
	if err := os.MkdirAll(r.imageDir(w.id), DirMode); err != nil {
		return nil, fmt.Errorf("add disk %q: %w", name, err)
	}
	s.disks = append(s.disks, w)
	return w, nil
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
	var syncTook time.Duration
	go func() {
		t := time.Now()
		err := s.syncImages()
		syncTook = time.Since(t)
		synced <- err
	}()
	for _, w := range s.disks {
		if w.reusedID {
			if err := s.repo.raiseFormat(FormatLineage); err != nil {
				return Point{}, fmt.Errorf("commit point of %s: %w", s.vm, err)
			}
			break
		}
	}
	waited := false
	p := Point{VM: s.vm, Gen: s.gen, Time: s.opts.Time.UTC(), Consistency: s.opts.Consistency, Started: s.started, Meta: s.opts.Meta, Attachments: s.attachmentInfos()}
	var opened, imagesSynced, entriesWritten time.Time
	err := s.repo.update(ctx, func(db *badger.DB) error {
		waited = true
		opened = time.Now()
		if err := <-synced; err != nil {
			return err
		}
		imagesSynced = time.Now()
		if err := ctx.Err(); err != nil {
			return err
		}
		// Room for the entries' tables first, then again every
		// roomCheckEvery entries (entryroom.go).
		finals := make([][]entry, len(s.disks))
		var left, leftVals int64
		for i, w := range s.disks {
			finals[i] = w.finalEntries()
			left += int64(len(finals[i]))
			leftVals += entryValueBytes(finals[i])
		}
		if err := s.repo.roomForEntries(left, leftVals); err != nil {
			return err
		}
		wb := db.NewWriteBatch()
		defer wb.Cancel()
		var walk []int // disks whose map digest is computed from the index
		for i, w := range s.disks {
			es := finals[i]
			for j, e := range es {
				if j > 0 && j%roomCheckEvery == 0 {
					if err := s.repo.roomForEntries(left, leftVals); err != nil {
						return err
					}
				}
				if err := wb.Set(blockKey(w.id, e.block, s.gen), e.val.encode()); err != nil {
					return fmt.Errorf("write index entries of disk %q: %w", w.name, err)
				}
				left, leftVals = left-1, leftVals-e.val.encodedLen()
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
		entriesWritten = time.Now()
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
			pts, err := s.repo.readPoints(db, s.vm)
			if err != nil {
				return err
			}
			p.ID = uniquePointID(p.Time, pts)
			if s.opts.ID != "" {
				if err := pointIDFree(pts, s.vm, s.opts.ID); err != nil {
					return err
				}
				p.ID = s.opts.ID
			}
			p.Committed = time.Now().UTC()
			if s.opts.Judge != nil {
				p.Verdict = s.opts.Judge(p, pts)
			}
			if err := setJSON(txn, vmGenKey(prefixPoint, s.vm, s.gen), p); err != nil {
				return err
			}
			if err := s.writeAttachments(txn); err != nil {
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
	s.repo.log.Debug("commit", "vm", s.vm, "gen", s.gen, "images_sync", syncTook, "wait_for_images", imagesSynced.Sub(opened), "index_entries", entriesWritten.Sub(imagesSynced))
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
	s.lock.Release()
}

// checkPointID fails with ErrPointExists when vm has a point of the given id.
func (r *Repo) checkPointID(ctx context.Context, vm, id string) error {
	pts, err := r.Points(ctx, vm)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return pointIDFree(pts, vm, id)
}

func pointIDFree(pts []Point, vm, id string) error {
	for _, p := range pts {
		if p.ID == id {
			return fmt.Errorf("VM %s point %s: %w", vm, id, ErrPointExists)
		}
	}
	return nil
}

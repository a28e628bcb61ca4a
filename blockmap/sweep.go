package blockmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// interruptedWriter names what a dead session was, for the sweep's log
// line: "an interrupted pull" for a session of "cairn pull", and a neutral
// word when its record does not say (written before purposes were kept).
func interruptedWriter(purpose string) string {
	words := strings.Fields(strings.TrimPrefix(purpose, "cairn "))
	if len(words) == 0 {
		return "an interrupted write"
	}
	switch words[0] { // "cairn backup job ID" is a backup
	case "pull", "import", "backup":
		return "an interrupted " + words[0]
	}
	return "an interrupted write (" + purpose + ")"
}

// sweepVM removes what dead sessions of vm left behind (index entries and
// delta images of generations that never committed) and finishes a garbage
// collection that a crash interrupted. The caller holds the VM's lock and
// the exclusive index lock.
func (r *Repo) sweepVM(db *badger.DB, vm string) error {
	var sessions []sessionRecord
	var gcPending bool
	var gcGens []uint32
	var rec vmRecord
	err := db.View(func(txn *badger.Txn) error {
		if _, err := getJSON(txn, vmKey(vm), &rec); err != nil {
			return err
		}
		all, err := readSessions(txn)
		if err != nil {
			return err
		}
		for _, s := range all {
			if s.VM == vm {
				sessions = append(sessions, s)
			}
		}
		gcGens, gcPending, err = readGC(txn, vm)
		return err
	})
	if err != nil {
		return fmt.Errorf("sweep %s: %w", vm, err)
	}
	fileSession, hasFile, err := r.readSessionFile(vm)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", vm, err)
	}
	if hasFile {
		pts, err := r.readPoints(db, vm)
		if err != nil {
			return fmt.Errorf("sweep %s: %w", vm, err)
		}
		// A session whose point was committed (the process died before it
		// removed the file) leaves nothing else behind.
		if !slices.ContainsFunc(pts, func(p Point) bool { return p.Gen == fileSession.Gen }) {
			sessions = append(sessions, fileSession)
		}
	}
	for _, s := range sessions {
		if s.PID != os.Getpid() {
			r.log.Info("sweeping "+interruptedWriter(s.Purpose), "vm", vm, "purpose", s.Purpose, "generation", s.Gen, "pid", s.PID, "started", s.Started)
		}
		disks := map[uint32]bool{}
		for _, d := range s.Disks {
			disks[d] = true
		}
		for _, d := range rec.Disks {
			disks[d] = true
		}
		for disk := range disks {
			if err := deleteGeneration(db, disk, s.Gen); err != nil {
				return fmt.Errorf("sweep %s generation %d: %w", vm, s.Gen, err)
			}
			if err := os.Remove(r.imagePath(disk, s.Gen)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("sweep %s generation %d: %w", vm, s.Gen, err)
			}
		}
		if err := db.Update(func(txn *badger.Txn) error { return txn.Delete(vmGenKey(prefixSession, vm, s.Gen)) }); err != nil {
			return fmt.Errorf("sweep %s generation %d: %w", vm, s.Gen, err)
		}
	}
	if hasFile {
		if err := r.removeSessionFile(vm); err != nil {
			return fmt.Errorf("sweep %s: %w", vm, err)
		}
	}
	if gcPending {
		// Readers may not have learned of the deletion yet (publishing
		// it failed): tell them again before anything is released.
		if err := r.publishDeleted(vm, gcGens); err != nil {
			r.log.Warn("space of deleted points stays unreleased until readers can be told", "vm", vm, "err", err)
			return nil
		}
		if _, err := r.collect(db, vm); err != nil {
			return err
		}
	}
	return nil
}

// markGC marks vm for garbage collection, adding gens to the generations
// whose deletion it finishes. Marks of older versions hold no list.
func markGC(txn *badger.Txn, vm string, gens []uint32) error {
	old, _, err := readGC(txn, vm)
	if err != nil {
		return err
	}
	return setJSON(txn, gcKey(vm), append(old, gens...))
}

// readGC reads vm's garbage-collection mark: whether one is pending and
// the deleted generations it names.
func readGC(txn *badger.Txn, vm string) (gens []uint32, pending bool, err error) {
	item, err := txn.Get(gcKey(vm))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) > 0 && v[0] == '[' {
			return json.Unmarshal(v, &gens)
		}
		return nil // the older mark: one byte
	})
	return gens, true, err
}

// vmNeedsSweep reports whether the index holds leftovers of vm for
// sweepVM: session records of the older format, or a pending collection.
func vmNeedsSweep(txn *badger.Txn, vm string) (bool, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: vmGenPrefix(prefixSession, vm)})
	it.Rewind()
	open := it.Valid()
	it.Close()
	if open {
		return true, nil
	}
	_, err := txn.Get(gcKey(vm))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// deleteGeneration removes every index entry of one disk generation.
func deleteGeneration(db *badger.DB, disk uint32, gen uint32) error {
	var keys [][]byte
	err := db.View(func(txn *badger.Txn) error {
		vi := newVersionIter(txn, disk, false)
		vi.lenient = true
		defer vi.close()
		for vi.next() {
			if vi.gen == gen {
				keys = append(keys, vi.key())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// GCStats count what a garbage collection released.
type GCStats struct {
	VersionsDeleted int   `json:"versions_deleted"`
	BytesReleased   int64 `json:"bytes_released"`
	ImagesDeleted   int   `json:"images_deleted"`
}

// collect deletes every block version of vm's disks that no committed
// point can see, punching their bytes out of the delta images and
// deleting images left with no live block. Then it clears the VM's
// pending-GC mark.
func (r *Repo) collect(db *badger.DB, vm string) (GCStats, error) {
	var st GCStats
	var rec vmRecord
	if err := db.View(func(txn *badger.Txn) error { _, err := getJSON(txn, vmKey(vm), &rec); return err }); err != nil {
		return st, fmt.Errorf("collect %s: %w", vm, err)
	}
	pts, err := r.readPoints(db, vm)
	if err != nil {
		return st, err
	}
	ids := make([]uint32, 0, len(rec.Disks))
	for _, id := range rec.Disks {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		ds, err := r.collectDisk(db, id, diskSpans(pts, id))
		if err != nil {
			return st, fmt.Errorf("collect %s disk %d: %w", vm, id, err)
		}
		st.VersionsDeleted += ds.VersionsDeleted
		st.BytesReleased += ds.BytesReleased
		st.ImagesDeleted += ds.ImagesDeleted
	}
	err = db.Update(func(txn *badger.Txn) error { return txn.Delete(gcKey(vm)) })
	return st, err
}

// collectDisk collects one disk; retained are the spans of the points
// that hold it (none when no point does: then every version goes).
func (r *Repo) collectDisk(db *badger.DB, disk uint32, retained []span) (GCStats, error) {
	var st GCStats
	type dead struct {
		key   []byte
		block uint64
		gen   uint32
		data  bool
	}
	var deads []dead
	live := map[uint32]int{} // gen -> live data versions
	err := db.View(func(txn *badger.Txn) error {
		vi := newVersionIter(txn, disk, true)
		vi.lenient = true
		defer vi.close()
		for vi.next() {
			kind, err := vi.kind()
			if err != nil {
				return err
			}
			if visible(retained, vi.gen, vi.newer) {
				if kind == kindData {
					live[vi.gen]++
				}
			} else {
				deads = append(deads, dead{key: vi.key(), block: vi.block, gen: vi.gen, data: kind == kindData})
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	// Punch first, delete keys second: a crash in between leaves invisible
	// versions that the next collection removes, never unreferenced bytes.
	files := map[uint32]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	bs := int64(r.cfg.BlockSize)
	for _, d := range deads {
		if !d.data || live[d.gen] == 0 {
			continue // the whole image goes below
		}
		f, ok := files[d.gen]
		if !ok {
			var err error
			f, err = os.OpenFile(r.imagePath(disk, d.gen), os.O_RDWR, 0)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return st, err
			}
			files[d.gen] = f
		}
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(d.block)*bs, bs); err != nil {
			return st, fmt.Errorf("release block %d of %s: %w", d.block, f.Name(), err)
		}
		st.BytesReleased += bs
	}
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return st, err
		}
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, d := range deads {
		if err := wb.Delete(d.key); err != nil {
			return st, err
		}
	}
	if err := wb.Flush(); err != nil {
		return st, err
	}
	st.VersionsDeleted = len(deads)
	// Delete images without a live block (also ones of swept generations).
	entries, err := os.ReadDir(r.imageDir(disk))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, err
	}
	for _, e := range entries {
		var gen uint32
		if _, err := fmt.Sscanf(e.Name(), "%d.img", &gen); err != nil {
			continue
		}
		if live[gen] > 0 {
			continue
		}
		path := r.imagePath(disk, gen)
		if fi, err := os.Stat(path); err == nil {
			// os.Stat fills a syscall.Stat_t (a unix.Stat_t never
			// matched: deleted images counted as 0 B released).
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
				st.BytesReleased += sys.Blocks * 512
			}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, err
		}
		st.ImagesDeleted++
	}
	return st, nil
}

// Sweep cleans up after interrupted writers of every VM that no running
// process holds. It is called by the daemon at start; writers sweep their
// own VM on their own.
func (r *Repo) Sweep(ctx context.Context) error {
	var vms []string
	err := r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			ss, err := readSessions(txn)
			for _, s := range ss {
				vms = append(vms, s.VM)
			}
			files, ferr := r.readSessionFiles()
			for _, s := range files {
				vms = append(vms, s.VM)
			}
			if err == nil {
				err = ferr
			}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixGC}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				vms = append(vms, string(it.Item().Key()[1:]))
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	for _, vm := range vms {
		lock, err := r.LockVM(ctx, vm, "cairn sweep")
		if err != nil {
			continue // a live writer; it sweeps for itself
		}
		err = r.update(ctx, func(db *badger.DB) error { return r.sweepVM(db, vm) })
		lock.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

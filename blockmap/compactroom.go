package blockmap

import (
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// Compactions write new tables through memory maps of sparse files, like
// every Badger write (indexroom.go): on a full filesystem a write to such
// a map kills the process with SIGBUS. The room check of a read-write
// open covers one write's log and memtable, not a merge, which rewrites
// its input tables before it deletes them. So a merge cairn starts itself
// (compactL0, and the wait for Badger's compactors in settleLevels) runs
// only when the filesystem has room for everything it may write;
// otherwise it is left to a later writer (lookups stay a little slower
// meanwhile) and a warning says why.

// mergeRoom is the most a merge of the index's level-0 tables into the
// level below (and the memtable Close flushes first) may write: the
// tables it reads, level 0 and the base level, plus one memtable.
func mergeRoom(db *badger.DB, memtable int64) int64 {
	base := 0
	for _, l := range db.Levels() {
		if l.Level > 0 && l.NumTables > 0 {
			base = l.Level
			break
		}
	}
	need := memtable
	for _, t := range db.Tables() {
		if t.Level == 0 || (base > 0 && t.Level == base) {
			need += int64(t.OnDiskSize)
		}
	}
	return need
}

// settleRoom is the most Badger's compactors may write while settleLevels
// waits for them: every table below level 0 (each level over its target
// merges into the one under it).
func settleRoom(db *badger.DB) int64 {
	var need int64
	for _, t := range db.Tables() {
		if t.Level > 0 {
			need += int64(t.OnDiskSize)
		}
	}
	return need
}

// roomForMerge reports whether the index's filesystem has need bytes
// free beyond the room a read-write open asks for; if not, the error
// says how much is free and needed. A filesystem that reports no size
// is not checked.
func (r *Repo) roomForMerge(need int64) error {
	free, err := r.indexFree()
	if err != nil || free < 0 {
		return nil
	}
	if want := need + r.indexRoom(); free < want {
		return fmt.Errorf("%w (%d bytes free on its filesystem, merging the index's tables may write %d)", ErrIndexNoRoom, free, want)
	}
	return nil
}

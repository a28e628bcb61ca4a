package blockmap

import (
	"context"
	"fmt"
	"math"

	badger "github.com/dgraph-io/badger/v4"
)

// Merges write new tables through memory maps of sparse files, like every
// Badger write (indexroom.go): on a full filesystem a write to such a map
// kills the process with SIGBUS. The room check of a read-write open
// covers one write's log and memtable, not a merge, which writes its
// output tables before it deletes its inputs. So merges run only when the
// filesystem has room for what they may write: Badger's background
// compactors during a write (openForWrite), the merge of level 0 after it
// (compactL0) and the wait for the compactors (settleLevels). Otherwise
// they are left to a later writer with room (lookups stay a little slower
// meanwhile) and a warning says why.

// openForWrite opens the index read-write for update. When the filesystem
// has no room for the largest merge Badger's compactors may start while
// the index is open (mergeRoom), it opens it again with the compactors
// off (and no stall of level 0, which nothing would drain).
func (r *Repo) openForWrite(ctx context.Context) (*badger.DB, error) {
	opts := r.badgerOptions(false)
	db, err := r.openIndex(ctx, opts)
	if err != nil || opts.NumCompactors == 0 {
		return db, err
	}
	// Compactors start after a random delay of up to a second: time to
	// look before one does.
	room := r.roomForMerge(mergeRoom(db))
	if room == nil {
		return db, nil
	}
	r.log.Warn("the index's tables are not merged during this write: its filesystem has no room for it; lookups stay slower until there is room", "err", room)
	if err := db.Close(); err != nil {
		return nil, err
	}
	return r.openIndex(ctx, opts.WithNumCompactors(0).WithNumLevelZeroTablesStall(math.MaxInt32))
}

// mergeRoom is the most one merge of the index may write, with the
// memtable Close flushes first: level 0 and the base level (the merge
// of level 0), or one table of a level and the whole level below it.
func mergeRoom(db *badger.DB) int64 {
	size := map[int]int64{}
	biggest := map[int]int64{}
	base := 0
	for _, t := range db.Tables() {
		n := int64(t.OnDiskSize)
		size[t.Level] += n
		biggest[t.Level] = max(biggest[t.Level], n)
		if t.Level > 0 && (base == 0 || t.Level < base) {
			base = t.Level
		}
	}
	need := size[0] + size[base]
	for l, b := range biggest {
		if l > 0 {
			need = max(need, b+size[l+1])
		}
	}
	return need + db.Opts().MemTableSize
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

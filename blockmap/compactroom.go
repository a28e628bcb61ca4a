package blockmap

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

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
// may lack room for the largest merge Badger's compactors may start while
// the index is open (mergeRoom), the compactors stay off (and level 0,
// which nothing drains then, does not stall the write). The common case,
// room for every table of the index, costs a directory
// listing; otherwise the index is opened without compactors first to
// look at its levels.
func (r *Repo) openForWrite(ctx context.Context) (*badger.DB, error) {
	opts := r.badgerOptions(false)
	if opts.NumCompactors == 0 || r.roomForMerge(r.tablesSize()) == nil {
		return r.openIndex(ctx, opts)
	}
	off := opts.WithNumCompactors(0).WithNumLevelZeroTablesStall(math.MaxInt32)
	db, err := r.openIndex(ctx, off)
	if err != nil {
		return nil, err
	}
	room := r.roomForMerge(mergeRoom(db))
	if room != nil {
		r.log.Warn("the index's tables are not merged during this write: its filesystem has no room for it; lookups stay slower until there is room", "err", room)
		return db, nil
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	return r.openIndex(ctx, opts)
}

// tablesSize is the size of the index's table files: no merge writes
// more.
func (r *Repo) tablesSize() int64 {
	ents, err := os.ReadDir(filepath.Join(r.dir, "index"))
	if err != nil {
		return math.MaxInt64 / 4 // unknown: look at the levels
	}
	var n int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
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

package blockmap

import (
	"fmt"
	"io/fs"
	"path/filepath"
)

// A commit writes one index entry per block it records: a first backup
// of a 1 TiB disk writes 16 million. Badger writes them to its
// write-ahead log, then flushes them to a new table per ~4 MiB memtable,
// both through memory maps of sparse files, so a write past the
// filesystem's end is a SIGBUS, not an error (indexroom.go). The room
// check of a read-write open covers one write's log and memtable, not the
// tables of a large write; so a commit checks the room in proportion to
// the entries it writes, before it writes any and again as it goes (other
// writers may fill the filesystem meanwhile), and fails cleanly with
// ErrIndexNoRoom: the point is not committed, the session can be aborted
// (which sweeps the entries already written), nothing committed is
// touched.

// entryTableOverhead bounds what a table adds to an entry's key and
// value, uncompressed: the version stamp (8), the value's meta and
// header varints, the entry's offset in its block, the bloom filter and
// the block index.
const entryTableOverhead = 24

// roomCheckEvery is how many entries a commit writes between room checks
// (about 2.5 MiB of index entries).
const roomCheckEvery = 32 << 10

// entriesRoom is the free space writing n block entries with values of
// valBytes bytes in all may take beyond the room of a read-write open
// (indexRoom, which covers the log and the memtables): their tables,
// twice, since Badger's compactors may merge the new level-0 tables into
// the level below while the write goes on.
func entriesRoom(n, valBytes int64) int64 {
	return 2 * (n*(blockKeyLen+entryTableOverhead) + valBytes)
}

// roomForEntries fails with ErrIndexNoRoom (in an fs.PathError naming the
// index) when the index's filesystem has less free space than writing n
// more block entries (valBytes of values) may take. A filesystem that
// reports no size is not checked.
func (r *Repo) roomForEntries(n, valBytes int64) error {
	free, err := r.indexFree()
	if err != nil || free < 0 || n <= 0 {
		return nil
	}
	need := entriesRoom(n, valBytes) + r.indexRoom()
	if free >= need {
		return nil
	}
	return &fs.PathError{Op: "write the index", Path: filepath.Join(r.dir, "index"),
		Err: fmt.Errorf("%w (%d bytes free on its filesystem, writing %d index entries may need %d): the point is not committed",
			ErrIndexNoRoom, free, n, need)}
}

// entryValueBytes is the size of the encoded values of es.
func entryValueBytes(es []entry) int64 {
	var n int64
	for _, e := range es {
		n += e.val.encodedLen()
	}
	return n
}

// encodedLen is len(v.encode()).
func (v blockValue) encodedLen() int64 {
	if v.kind != kindData {
		return 1
	}
	return 1 + 4 + 32
}

package blockmap

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// TestCompactionNeedsRoom: the merge of the index's level-0 tables that a
// writer starts after its update (compactL0) runs only when the
// filesystem has room for what it writes. It rewrote every level-0 table
// through memory maps after a room check of one write's size, so on a
// nearly full filesystem it died of SIGBUS; now it is postponed with a
// warning, and the update stands. Run in a child process (a SIGBUS ends
// the process) on a small tmpfs.
func TestCompactionNeedsRoom(t *testing.T) {
	out, child, err := onSmallTmpfs(t, "TestCompactionNeedsRoom", "CAIRN_COMPACT_ROOM_DIR", "40m", compactionNeedsRoomChild)
	if child {
		return
	}
	if err != nil {
		t.Fatalf("the writer on a nearly full filesystem died: %v\n%s", err, tail(out))
	}
	if !bytes.Contains(out, []byte("compacting the index postponed")) || !bytes.Contains(out, []byte("merging the index's tables may write")) {
		t.Fatalf("no warning that the compaction was postponed:\n%s", tail(out))
	}
}

// compactionNeedsRoomChild makes compactL0At-1 overlapping level-0 tables
// of about 700 KiB, fills the filesystem up to a little more than a
// write's room, and makes one more update, which starts the merge.
func compactionNeedsRoomChild(t *testing.T, dir string) {
	ctx := context.Background()
	repoDir := filepath.Join(dir, "repo")
	if err := Init(ctx, repoDir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, repoDir, Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.tuneIndex = func(o badger.Options) badger.Options { return o.WithCompression(0) }
	rng := rand.New(rand.NewPCG(1, 2))
	// Keys of every update spread over one key range, so that the tables
	// overlap and a merge rewrites them (disjoint ones are only moved).
	var lastKey []byte
	write := func(i int) {
		t.Helper()
		err := r.update(ctx, func(db *badger.DB) error {
			wb := db.NewWriteBatch()
			defer wb.Cancel()
			for range 12000 {
				v := make([]byte, 32)
				for j := range v {
					v[j] = byte(rng.Uint32())
				}
				lastKey = []byte(fmt.Sprintf("zz-compact-room/%010d", rng.IntN(1<<30)))
				if err := wb.Set(lastKey, v); err != nil {
					return err
				}
			}
			return wb.Flush()
		})
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	l0Tables := func() (n int, size int64) {
		r.view(ctx, func(db *badger.DB) error {
			n = levelZeroTables(db)
			for _, tb := range db.Tables() {
				size += int64(tb.OnDiskSize)
			}
			return nil
		})
		return n, size
	}
	i := 0
	for ; i < 3*compactL0At; i++ {
		if n, _ := l0Tables(); n == compactL0At-1 {
			break
		}
		write(i)
	}
	free, err := r.indexFree()
	if err != nil {
		t.Fatal(err)
	}
	room := r.indexRoom() + 1536<<10
	if free <= room {
		t.Fatalf("%d bytes free, want more than %d", free, room)
	}
	if err := os.WriteFile(filepath.Join(dir, "filler"), bytes.Repeat([]byte{1}, int(free-room)), 0o644); err != nil {
		t.Fatal(err)
	}
	n, tables := l0Tables()
	free, _ = r.indexFree()
	t.Logf("%d level-0 tables, %d bytes of tables, %d bytes free, room %d", n, tables, free, r.indexRoom())
	write(i) // its close makes the 8th level-0 table: compactL0
	n, tables = l0Tables()
	free, _ = r.indexFree()
	t.Logf("after: %d level-0 tables, %d bytes of tables, %d bytes free", n, tables, free)
	check := func(what string) {
		t.Helper()
		err := r.view(ctx, func(db *badger.DB) error {
			item, err := db.NewTransaction(false).Get(lastKey)
			if err != nil {
				return err
			}
			return item.Value(func([]byte) error { return nil })
		})
		if err != nil {
			t.Fatalf("the update %s: %v", what, err)
		}
	}
	check("after a postponed compaction")

	// A merge inside a write: Badger's compactors (which start within a
	// second of the open) see level 0 over its count while the write
	// goes on.
	r.tuneIndex = func(o badger.Options) badger.Options {
		return o.WithCompression(0).WithNumLevelZeroTables(2).WithNumLevelZeroTablesStall(64)
	}
	err = r.update(ctx, func(db *badger.DB) error {
		lastKey = []byte("zz-compact-room/long-write")
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(lastKey, []byte("v")) }); err != nil {
			return err
		}
		time.Sleep(1500 * time.Millisecond) // a long write: the compactors have started
		return nil
	})
	if err != nil {
		t.Fatalf("a long update on a nearly full filesystem: %v", err)
	}
	check("that ran while a merge had no room")
}

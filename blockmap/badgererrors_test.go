package blockmap

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestBadgerErrorTexts makes Badger fail the two ways the index recognises
// by text (see badgererrors.go) and checks that the recognisers still
// match: it fails when a Badger upgrade changes the texts.
func TestBadgerErrorTexts(t *testing.T) {
	opts := func(dir string) badger.Options {
		return badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(8 << 20).WithValueLogFileSize(1 << 20).WithValueThreshold(1 << 10)
	}
	dir := filepath.Join(t.TempDir(), "a")
	db, err := badger.Open(opts(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}

	// A second open of a directory in use: read-write and read-only.
	for _, ro := range []bool{false, true} {
		db2, err := badger.Open(opts(dir).WithReadOnly(ro))
		if err == nil {
			db2.Close()
			t.Fatalf("second open (read-only %v) of an index in use succeeded", ro)
		}
		if !isDirLocked(err) || isTruncateNeeded(err) {
			t.Errorf("second open (read-only %v): %v: isDirLocked %v, want true", ro, err, isDirLocked(err))
		}
	}

	// A copy taken while the writer is open is what a killed writer leaves:
	// a write-ahead log longer than its entries, which read-only Badger
	// refuses to replay.
	crashed := filepath.Join(t.TempDir(), "b")
	if err := os.Mkdir(crashed, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "LOCK" {
			continue
		}
		copyFile(t, filepath.Join(dir, e.Name()), filepath.Join(crashed, e.Name()))
	}
	db3, err := badger.Open(opts(crashed).WithReadOnly(true))
	if err == nil {
		db3.Close()
		t.Fatal("read-only open of a crashed writer's index succeeded")
	}
	if !isTruncateNeeded(err) || isDirLocked(err) {
		t.Errorf("read-only open after a crash: %v: isTruncateNeeded %v, want true", err, isTruncateNeeded(err))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

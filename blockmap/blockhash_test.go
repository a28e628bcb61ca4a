package blockmap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/zeebo/blake3"
)

// TestBlockHashes: each hash a repository can name in cairn.json (and
// none, as repositories older than the field have) is the one stored for
// every block, detects unchanged blocks, and is what verify checks.
func TestBlockHashes(t *testing.T) {
	for _, tc := range []struct {
		name, init, inJSON string
		sum                func([]byte) [32]byte
	}{
		{"default", "", HashBLAKE3, blake3.Sum256},
		{"sha256", HashSHA256, HashSHA256, sha256.Sum256},
		{"older repository without the field", HashSHA256, "", sha256.Sum256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "repo")
			if err := Init(ctx, dir, InitOptions{BlockSize: testBS, Hash: tc.init}); err != nil {
				t.Fatal(err)
			}
			cfg := readConfig(t, dir)
			if cfg.Hash != tc.init && !(tc.init == "" && cfg.Hash == HashBLAKE3) {
				t.Fatalf("cairn.json names hash %q", cfg.Hash)
			}
			cfg.Hash = tc.inJSON
			data, _ := json.Marshal(cfg)
			if err := os.WriteFile(filepath.Join(dir, "cairn.json"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(ctx, dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			d := &modelDisk{name: "d0", data: make([]byte, 4*testBS), changed: map[int64]bool{}}
			for i := range d.data[:3*testBS] {
				d.data[i] = byte(i*7 + i/testBS)
			}
			p1 := backup(t, r, "vm", []*modelDisk{d}, true, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
			var stored [32]byte
			err = r.view(ctx, func(db *badger.DB) error {
				return db.View(func(txn *badger.Txn) error {
					it, err := txn.Get(blockKey(p1.Disks[0].ID, 1, p1.Gen))
					if err != nil {
						return err
					}
					raw, err := it.ValueCopy(nil)
					if err != nil {
						return err
					}
					v, ok := decodeBlockValue(raw)
					if !ok || v.kind != kindData {
						t.Fatalf("block 1: value %x is not data", raw)
					}
					stored = v.sum
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.sum(d.data[testBS : 2*testBS]); stored != want {
				t.Fatalf("block 1 stored hash %x, want %x", stored, want)
			}
			// Blocks 0 and 1 written again with the same bytes, block 2 changed.
			d.data[2*testBS] ^= 0xff
			d.changed = map[int64]bool{0: true, 1: true, 2: true}
			p2 := backup(t, r, "vm", []*modelDisk{d}, false, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
			if got := p2.Disks[0].ChangedBlocks; got != 1 {
				t.Errorf("incremental stored %d changed blocks, want 1 (blocks 0 and 1 are unchanged)", got)
			}
			if !bytes.Equal(readAll(t, r, p2, "d0"), d.data) {
				t.Fatal("incremental reads back differently")
			}
			rep, err := r.Verify(ctx, VerifyOptions{})
			if err != nil || !rep.OK() {
				t.Fatalf("clean repository: %v %+v", err, rep)
			}
			f, err := os.OpenFile(r.imagePath(p1.Disks[0].ID, p1.Gen), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{0xAA}, testBS+9)
			f.Close()
			rep, err = r.Verify(ctx, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Bad) != 1 || rep.Bad[0].Offset != testBS || !strings.Contains(rep.Bad[0].Problem, "hash") {
				t.Fatalf("verify after a flipped byte in block 1: %+v", rep.Bad)
			}
		})
	}
}

// TestUnknownBlockHash: a repository naming a hash this cairn does not
// know is refused with an error that names it, and init refuses one too.
func TestUnknownBlockHash(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := Init(ctx, dir, InitOptions{BlockSize: testBS, Hash: "md5"}); err == nil || !strings.Contains(err.Error(), `"md5"`) {
		t.Fatalf("init with hash md5: %v", err)
	}
	if err := Init(ctx, dir, InitOptions{BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	cfg := readConfig(t, dir)
	cfg.Hash = "blake9"
	data, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "cairn.json"), data, 0o644)
	if _, err := Open(ctx, dir, Options{}); err == nil || !strings.Contains(err.Error(), `"blake9"`) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("open with hash blake9: %v", err)
	}
}

func readConfig(t *testing.T, dir string) Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "cairn.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

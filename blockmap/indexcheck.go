package blockmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/dgraph-io/ristretto/v2/z"
)

// checkedTables remembers the index tables (.sst files, immutable once
// written) whose checksums this process has verified, by name, size and
// modification time, so each is read whole once per process.
type checkedTables struct {
	mu   sync.Mutex
	seen map[string]bool
}

// checkTables verifies every table of the index before Badger opens it:
// Badger opens tables in goroutines of its own, where a damaged footer
// makes it panic beyond any recover. Each table's index and every block
// are checked against their checksums here, in this goroutine.
func (r *Repo) checkTables(opts badger.Options) error {
	c := &r.tables
	if err := checkManifest(opts.Dir); err != nil {
		return err
	}
	live, err := manifestTables(opts)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return fmt.Errorf("read index directory: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		if id, ok := table.ParseFileID(e.Name()); ok && live != nil && !live[id] {
			// Not a table of the index: a writer killed while it
			// created one (an empty file) or removed one. Badger
			// deletes such files when it opens the index.
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile (a compaction)
		}
		key := fmt.Sprintf("%s/%d/%d", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		c.mu.Lock()
		done := c.seen[key]
		c.mu.Unlock()
		if done {
			continue
		}
		if err := checkTable(filepath.Join(opts.Dir, e.Name()), opts); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		c.mu.Lock()
		if c.seen == nil {
			c.seen = map[string]bool{}
		}
		c.seen[key] = true
		c.mu.Unlock()
	}
	return nil
}

// manifestTables returns the ids of the tables the index's MANIFEST lists,
// the ones Badger opens; nil for a new index without a MANIFEST. Call it
// after checkManifest.
func manifestTables(opts badger.Options) (map[uint64]bool, error) {
	path := filepath.Join(opts.Dir, "MANIFEST")
	fp, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer fp.Close()
	mf, _, err := badger.ReplayManifestFile(fp, opts.ExternalMagicVersion, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrIndexDamaged, path, err)
	}
	live := make(map[uint64]bool, len(mf.Tables))
	for id := range mf.Tables {
		live[id] = true
	}
	return live, nil
}

// checkManifest reads the index's MANIFEST (the list of its tables) the
// way Badger does, but strictly: Badger stops quietly at a record that
// runs past the end of the file (taking it for a write cut short), so a
// damaged length there would drop every later change, and with it tables
// and recovery points, without a word. Records are appended with one
// write each, so only a crash of the machine or a full disk leaves the
// last one cut short: that one is let through (Badger drops it, as it
// was never complete), a whole record behind a damaged length is not.
func checkManifest(dir string) error {
	path := filepath.Join(dir, "MANIFEST")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new index
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	bad := func(what string, off int) error {
		return fmt.Errorf("%w: %s: %s at byte %d", ErrIndexDamaged, path, what, off)
	}
	if len(data) < 8 || string(data[:4]) != "Bdgr" {
		return bad("no manifest header", 0)
	}
	for off := 8; off < len(data); {
		if len(data)-off < 8 {
			return bad("a record is cut short", off)
		}
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n > len(data)-off-8 {
			// A write cut short (the machine crashed, or the disk was
			// full) leaves part of the last record, which Badger drops;
			// a damaged length leaves a record that is whole, shorter.
			if wholeRecordAt(data[off+8:], sum) {
				return bad("a record's length runs past the end of the file", off)
			}
			return nil
		}
		if crc32.Checksum(data[off+8:off+8+n], castagnoli) != sum {
			return bad("a record fails its checksum", off)
		}
		off += 8 + n
	}
	return nil
}

// wholeRecordAt reports whether some prefix of rest has the checksum sum:
// the record is whole there, and its length field is what was damaged.
func wholeRecordAt(rest []byte, sum uint32) bool {
	var c uint32
	for i := 0; i < len(rest); i++ {
		c = crc32.Update(c, castagnoli, rest[i:i+1])
		if c == sum {
			return true
		}
	}
	return false
}

// checkTable opens one table read-only and verifies its checksums.
func checkTable(path string, opts badger.Options) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: table %s cannot be read: %v", ErrIndexDamaged, path, p)
		}
	}()
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return err
	}
	if errors.Is(err, os.ErrPermission) {
		// Not damage: a file another user (root) made (modes.go).
		return fmt.Errorf("table %s: %w", path, os.ErrPermission)
	}
	if err != nil { // z.NewFile: an empty file
		return fmt.Errorf("%w: table %s: %v", ErrIndexDamaged, path, err)
	}
	t, err := table.OpenTable(mf, table.Options{
		ReadOnly:             true,
		TableSize:            uint64(opts.BaseTableSize),
		BlockSize:            opts.BlockSize,
		BloomFalsePositive:   opts.BloomFalsePositive,
		ChkMode:              options.OnTableRead,
		Compression:          opts.Compression,
		ZSTDCompressionLevel: opts.ZSTDCompressionLevel,
	})
	if err != nil {
		return fmt.Errorf("%w: table %s: %v", ErrIndexDamaged, path, err)
	}
	t.MmapFile.Close(-1)
	return nil
}

// damageError turns what Badger reports about a damaged index into an
// error that wraps ErrIndexDamaged and names the index.
func (r *Repo) damageError(err error) error {
	if err == nil || errors.Is(err, ErrIndexDamaged) {
		return err
	}
	if errors.Is(err, y.ErrChecksumMismatch) {
		return fmt.Errorf("%w (%s): %v", ErrIndexDamaged, filepath.Join(r.dir, "index"), err)
	}
	return err
}

// recovered converts a panic inside Badger (a damaged index it did not
// check) into an ErrIndexDamaged error naming the index.
func (r *Repo) recovered(p any, what string) error {
	r.log.Debug("index panic", "what", what, "panic", p, "stack", string(debug.Stack()))
	return fmt.Errorf("%w (%s): %s: %v", ErrIndexDamaged, filepath.Join(r.dir, "index"), what, p)
}

package blockmap

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// indexFixture is a repository with a few points whose bytes are known.
type indexFixture struct {
	dir  string
	want map[string]map[string][]byte // point id -> disk -> bytes
	ids  []string                     // point ids, oldest first
}

func newIndexFixture(t *testing.T) indexFixture {
	t.Helper()
	r := newTestRepo(t)
	defer r.Close()
	rng := rand.New(rand.NewPCG(4, 4))
	a := &modelDisk{name: "a", data: make([]byte, 40*testBS+100), changed: map[int64]bool{}}
	b := &modelDisk{name: "b", data: make([]byte, 12*testBS), changed: map[int64]bool{}}
	for _, d := range []*modelDisk{a, b} {
		for i := range d.data[:len(d.data)*2/3] {
			d.data[i] = byte(rng.Uint32())
		}
	}
	fx := indexFixture{dir: r.Dir(), want: map[string]map[string][]byte{}}
	when := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for g := 0; g < 4; g++ {
		if g > 0 {
			for _, d := range []*modelDisk{a, b} {
				for i := 0; i < 3; i++ {
					blk := rng.Int64N(d.blocks() - 1)
					for j := blk * testBS; j < (blk+1)*testBS; j++ {
						d.data[j] = byte(rng.Uint32())
					}
					d.changed[blk] = true
				}
			}
		}
		when = when.Add(time.Hour)
		p := backup(t, r, "vm", []*modelDisk{a, b}, g == 0, when)
		fx.ids = append(fx.ids, p.ID)
		fx.want[p.ID] = map[string][]byte{"a": bytes.Clone(a.data), "b": bytes.Clone(b.data)}
	}
	return fx
}

// copyDir copies a repository (cp -a keeps holes and modes).
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "repo")
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return to
}

// exercise runs what the commands do (points, export, verify) on a
// repository whose index may be damaged. Each may fail, none may panic,
// and none may succeed with wrong answers. It returns how many failed.
func (fx indexFixture) exercise(t *testing.T, dir, what string) (failed int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Open(ctx, dir, Options{Logger: quietLogger()})
	if err != nil {
		return 1
	}
	defer r.Close()
	pts, err := r.Points(ctx, "vm")
	if err != nil {
		failed++
	} else {
		var ids []string
		for _, p := range pts {
			ids = append(ids, p.ID)
		}
		if !slices.Equal(ids, fx.ids) {
			t.Errorf("%s: points listed %v with success, want %v", what, ids, fx.ids)
		}
	}
	for _, p := range pts {
		for _, d := range p.Disks {
			dr, err := r.OpenDisk(ctx, p, d.Name)
			if err != nil {
				failed++
				continue
			}
			buf := make([]byte, dr.Size())
			_, err = dr.ReadAt(buf, 0)
			dr.Close()
			if err != nil && err != io.EOF {
				failed++
				continue
			}
			if !bytes.Equal(buf, fx.want[p.ID][d.Name]) {
				t.Errorf("%s: point %s disk %s read other bytes with success", what, p.ID, d.Name)
			}
		}
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() {
		failed++
	}
	if err != nil && !errors.Is(err, ErrIndexDamaged) && !strings.Contains(err.Error(), "index") {
		t.Errorf("%s: verify fails without naming the index: %v", what, err)
	}
	return failed
}

// TestIndexCorruptionNeverServed flips 1-4 random bytes in one file of the
// index (mostly tables), many seeds within a time budget, and truncates
// every table: no operation may panic, and none may return wrong points
// or bytes with success. (Issue #12, item 4.)
func TestIndexCorruptionNeverServed(t *testing.T) {
	fx := newIndexFixture(t)
	if n := fx.exercise(t, fx.dir, "intact"); n != 0 {
		t.Fatalf("the intact fixture fails %d operations", n)
	}
	files, _ := filepath.Glob(filepath.Join(fx.dir, "index", "*"))
	var ssts, others []string
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			continue
		}
		if strings.HasSuffix(f, ".sst") {
			ssts = append(ssts, filepath.Base(f))
		} else {
			others = append(others, filepath.Base(f))
		}
	}
	if len(ssts) == 0 {
		t.Fatalf("fixture index has no tables: %v", files)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d; tables %v; other files %v", seed, ssts, others)
	rng := rand.New(rand.NewPCG(seed, 9))
	budget := 10 * time.Second
	if testing.Short() {
		budget = 5 * time.Second
	}
	start := time.Now()
	trials, detected := 0, 0
	for trials < 400 && time.Since(start) < budget {
		trials++
		dir := copyDir(t, fx.dir)
		name := ssts[rng.IntN(len(ssts))]
		if len(others) > 0 && rng.IntN(4) == 0 {
			name = others[rng.IntN(len(others))]
		}
		path := filepath.Join(dir, "index", name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var flips []string
		for i := 0; i <= rng.IntN(4); i++ {
			off := rng.IntN(len(data))
			x := byte(1 + rng.IntN(255))
			data[off] ^= x
			flips = append(flips, fmt.Sprintf("%d^%#x", off, x))
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if fx.exercise(t, dir, fmt.Sprintf("trial %d: %s flipped at %v", trials, name, flips)) > 0 {
			detected++
		}
		os.RemoveAll(filepath.Dir(dir))
	}
	t.Logf("%d trials in %v, %d with a failed (refused) operation", trials, time.Since(start).Round(time.Millisecond), detected)
	// A MANIFEST record whose length runs past the end of the file: Badger
	// would take it for a cut-short write and drop it and all after it.
	manifest, err := os.ReadFile(filepath.Join(fx.dir, "index", "MANIFEST"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 8; off+8 <= len(manifest); {
		n := int(binary.BigEndian.Uint32(manifest[off:]))
		dir := copyDir(t, fx.dir)
		bad := bytes.Clone(manifest)
		binary.BigEndian.PutUint32(bad[off:], uint32(len(bad)-off-8+1))
		if err := os.WriteFile(filepath.Join(dir, "index", "MANIFEST"), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		fx.exercise(t, dir, fmt.Sprintf("MANIFEST record at %d runs past the end", off))
		os.RemoveAll(filepath.Dir(dir))
		off += 8 + n
	}
	for _, name := range ssts {
		for _, keep := range []string{"empty", "half", "short"} {
			dir := copyDir(t, fx.dir)
			path := filepath.Join(dir, "index", name)
			fi, _ := os.Stat(path)
			size := map[string]int64{"empty": 0, "half": fi.Size() / 2, "short": fi.Size() - 1}[keep]
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			if fx.exercise(t, dir, fmt.Sprintf("%s truncated to %d bytes", name, size)) == 0 {
				t.Errorf("%s truncated to %d bytes: every operation succeeded", name, size)
			}
			os.RemoveAll(filepath.Dir(dir))
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestManifestCutShortIsNotDamage: a MANIFEST whose last record was cut
// short (a full disk while Badger appended it) still opens; the points
// committed before it are all there.
func TestManifestCutShortIsNotDamage(t *testing.T) {
	fx := newIndexFixture(t)
	path := filepath.Join(fx.dir, "index", "MANIFEST")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A change set of 40 bytes, of which only 12 made it to the disk.
	rec := make([]byte, 8+12)
	binary.BigEndian.PutUint32(rec, 40)
	binary.BigEndian.PutUint32(rec[4:], 0x12345678)
	if err := os.WriteFile(path, append(data, rec...), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := fx.exercise(t, fx.dir, "MANIFEST cut short"); n != 0 {
		t.Fatalf("%d operations failed on an index whose MANIFEST ends in a write cut short", n)
	}
}

// TestLostVersionIsFound: an index that lost one block version (a newer
// version of block 0) would serve the older, well-checksummed bytes for
// the newer point. The point's block map record finds it: opening the
// disk fails with ErrIndexDamaged and verify names the point.
func TestLostVersionIsFound(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	x := bytes.Repeat([]byte{1}, 4*testBS)
	p1 := pointOf(t, r, "vm", true, "d", x)
	y := bytes.Clone(x)
	y[0] = 2
	p2 := pointOf(t, r, "vm", true, "d", y)
	if err := r.update(ctx, func(db *badger.DB) error {
		return db.Update(func(txn *badger.Txn) error { return txn.Delete(blockKey(p2.Disks[0].ID, 0, p2.Gen)) })
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.OpenDisk(ctx, p2, "d"); !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("open of a point whose index lost a version: %v, want ErrIndexDamaged", err)
	}
	if got := readAll(t, r, p1, "d"); !bytes.Equal(got, x) {
		t.Fatal("the older point no longer reads")
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bad) != 1 || rep.Bad[0].Offset != -1 || rep.Bad[0].Gen != p2.Gen || !strings.Contains(rep.Bad[0].Problem, "index is damaged") {
		t.Fatalf("verify: %+v", rep.Bad)
	}
}

package blockmap

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestIndexCompactsLevelZero: every commit adds a level-0 table to the
// index, and cairn's short-lived processes never give Badger's background
// compactors time to run. Writers compact level 0 themselves, so after
// many commits the index still has fewer than compactL0At level-0
// tables, and every point still reads back as written.
func TestIndexCompactsLevelZero(t *testing.T) {
	r := newTestRepo(t)
	defer r.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	disk := &modelDisk{name: "d0", data: make([]byte, 40*testBS), changed: map[int64]bool{}}
	var points []Point
	var want [][]byte
	most := 0
	when := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3*compactL0At; i++ {
		for j := 0; j < 3; j++ {
			off := rng.Int64N(int64(len(disk.data)) - testBS)
			for k := off; k < off+testBS; k++ {
				disk.data[k] = byte(rng.Uint32())
			}
			disk.changed[off/testBS], disk.changed[(off+testBS-1)/testBS] = true, true
		}
		points = append(points, backup(t, r, "vm", []*modelDisk{disk}, i == 0, when.Add(time.Duration(i)*time.Hour)))
		want = append(want, bytes.Clone(disk.data))
		var l0 int
		if err := r.view(ctx, func(db *badger.DB) error { l0 = levelZeroTables(db); return nil }); err != nil {
			t.Fatal(err)
		}
		most = max(most, l0)
	}
	if most >= compactL0At {
		t.Errorf("the index reached %d level-0 tables after %d commits; writers should compact at %d", most, len(points), compactL0At)
	}
	if most < 2 {
		t.Errorf("at most %d level-0 tables seen: the test no longer adds one per commit", most)
	}
	for i, p := range points {
		if got := readAll(t, r, p, "d0"); !bytes.Equal(got, want[i]) {
			t.Fatalf("point %d (%s) reads differently after compactions", i+1, p.ID)
		}
	}
}

// TestIndexCompactsLowerLevels: as the index grows, level-0 compactions
// fill the level below past its target size; writers then let Badger's
// compactors push the excess further down, so no level stays over its
// target (a base level that only grew would make every level-0
// compaction rewrite all of it). Badger's level sizes are shrunk so
// that a few dozen small commits exercise it.
func TestIndexCompactsLowerLevels(t *testing.T) {
	r := newTestRepo(t)
	defer r.Close()
	r.tuneIndex = func(o badger.Options) badger.Options {
		return o.WithBaseTableSize(16 << 10).WithBaseLevelSize(32 << 10).WithLevelSizeMultiplier(2).WithBlockSize(1 << 10)
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 9))
	disk := &modelDisk{name: "d0", data: make([]byte, 600*testBS), changed: map[int64]bool{}}
	var want []byte
	var last Point
	deepest := 0
	when := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 5*compactL0At; i++ {
		for j := 0; j < 60; j++ {
			b := rng.Int64N(disk.blocks())
			disk.data[b*testBS+rng.Int64N(testBS)] = byte(rng.Uint32() | 1)
			disk.changed[b] = true
		}
		last = backup(t, r, "vm", []*modelDisk{disk}, i == 0, when.Add(time.Duration(i)*time.Hour))
		want = bytes.Clone(disk.data)
		err := r.view(ctx, func(db *badger.DB) error {
			for _, l := range db.Levels() {
				if l.Level > 0 && l.Score >= 1 {
					t.Errorf("after commit %d level %d holds %d bytes, over its target %d", i+1, l.Level, l.Size, l.TargetSize)
				}
				if l.Level > 0 && l.NumTables > 0 {
					deepest = max(deepest, 7-l.Level)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if deepest < 2 {
		t.Errorf("the index used only %d level(s) below 0; the test no longer grows it past the base level", deepest)
	}
	if got := readAll(t, r, last, "d0"); !bytes.Equal(got, want) {
		t.Fatal("the newest point reads differently after compactions")
	}
}

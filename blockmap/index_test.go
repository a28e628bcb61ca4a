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

package blockmap

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// versionDB is an in-memory index holding disk 7's versions: block ->
// generations (data unless listed in zero), plus a version of disk 8 that
// no walk of disk 7 may see.
func versionDB(t *testing.T, versions map[uint64][]uint32, zero map[[2]uint64]bool, extra ...[]byte) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(func(txn *badger.Txn) error {
		for b, gens := range versions {
			for _, g := range gens {
				v := blockValue{kind: kindData}
				v.sum[0], v.sum[1] = byte(b), byte(g)
				if zero[[2]uint64{b, uint64(g)}] {
					v = blockValue{kind: kindZero}
				}
				if err := txn.Set(blockKey(7, b, g), v.encode()); err != nil {
					return err
				}
			}
		}
		for _, k := range extra {
			if err := txn.Set(k, []byte{kindData}); err != nil {
				return err
			}
		}
		return txn.Set(blockKey(8, 0, 1), blockValue{kind: kindData}.encode())
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestVersionIterAll(t *testing.T) {
	db := versionDB(t, map[uint64][]uint32{0: {1, 3, 5}, 2: {2}, 9: {4, 6}}, nil)
	var got []string
	err := db.View(func(txn *badger.Txn) error {
		vi := newVersionIter(txn, 7, true)
		defer vi.close()
		for vi.next() {
			got = append(got, fmt.Sprintf("%d/%d<%d", vi.block, vi.gen, vi.newer))
		}
		return vi.err
	})
	want := "0/5<0 0/3<5 0/1<3 2/2<0 9/6<0 9/4<6"
	if err != nil || strings.Join(got, " ") != want {
		t.Errorf("versions %q, %v; want %q", strings.Join(got, " "), err, want)
	}
}

func TestVersionIterNewest(t *testing.T) {
	versions := map[uint64][]uint32{0: {1, 3, 5}, 1: {4}, 2: {2}, 3: {1, 6}, 9: {4, 6}}
	zero := map[[2]uint64]bool{{2, 2}: true}
	for _, tc := range []struct {
		sp      span
		nblocks int64
		want    string
	}{
		{span{0, 6}, 100, "0/5 1/4 2/2 3/6 9/6"},
		{span{0, 4}, 100, "0/3 1/4 2/2 3/1 9/4"},
		{span{0, 2}, 100, "0/1 2/2 3/1"},
		{span{3, 4}, 100, "0/3 1/4 9/4"}, // blocks 2 and 3 hold an earlier life's versions: holes
		{span{0, 6}, 3, "0/5 1/4 2/2"},
		{span{0, 0}, 100, ""},
	} {
		db := versionDB(t, versions, zero)
		var got []string
		err := db.View(func(txn *badger.Txn) error {
			vi := newVersionIter(txn, 7, true)
			defer vi.close()
			for vi.nextNewest(tc.sp, tc.nblocks) {
				v, err := vi.value()
				if err != nil {
					return err
				}
				if want := zero[[2]uint64{vi.block, uint64(vi.gen)}]; (v.kind == kindZero) != want {
					t.Errorf("span %v block %d gen %d: kind %d", tc.sp, vi.block, vi.gen, v.kind)
				}
				got = append(got, fmt.Sprintf("%d/%d", vi.block, vi.gen))
			}
			return vi.err
		})
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("span %v below %d: %q, %v; want %q", tc.sp, tc.nblocks, strings.Join(got, " "), err, tc.want)
		}
		// A seek per block finds the same versions.
		var seek []string
		err = db.View(func(txn *badger.Txn) error {
			vi := newVersionIter(txn, 7, false)
			defer vi.close()
			for b := uint64(0); b < uint64(min(tc.nblocks, 12)); b++ {
				found, more, err := vi.seekNewest(b, tc.sp)
				if err != nil || !more {
					return err
				}
				if found {
					seek = append(seek, fmt.Sprintf("%d/%d", vi.block, vi.gen))
				}
			}
			return nil
		})
		if err != nil || strings.Join(seek, " ") != tc.want {
			t.Errorf("seeks in span %v below %d: %q, %v; want %q", tc.sp, tc.nblocks, strings.Join(seek, " "), err, tc.want)
		}
	}
}

// A malformed key under the disk's prefix fails a strict walk with
// ErrIndexDamaged and is counted and passed over by a lenient one.
func TestVersionIterMalformedKey(t *testing.T) {
	bad := append(diskPrefix(7), 1, 2, 3) // too short for a block key
	db := versionDB(t, map[uint64][]uint32{0: {1}, 5: {2}}, nil, bad)
	err := db.View(func(txn *badger.Txn) error {
		vi := newVersionIter(txn, 7, false)
		defer vi.close()
		for vi.next() {
		}
		return vi.err
	})
	if !errors.Is(err, ErrIndexDamaged) {
		t.Errorf("strict walk over a malformed key: %v", err)
	}
	var n int
	err = db.View(func(txn *badger.Txn) error {
		vi := newVersionIter(txn, 7, false)
		vi.lenient = true
		defer vi.close()
		for vi.next() {
			n++
		}
		if vi.skipped != 1 {
			t.Errorf("lenient walk skipped %d keys, want 1", vi.skipped)
		}
		return vi.err
	})
	if err != nil || n != 2 {
		t.Errorf("lenient walk: %d versions, %v; want 2", n, err)
	}
}

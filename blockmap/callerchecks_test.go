package blockmap

import (
	"bytes"
	"context"
	"testing"
)

// TestCallerChecksDeletedSkipsTheStat: a reader whose caller checks for
// deletion after every read (CallerChecksDeleted, the FUSE mount) does
// not stat catalog.seq on partial reads, so a partial read after a forget
// is not refused by the reader itself — the caller's check must refuse
// it (fusefs: TestMountReadsWhileForgetAndPrune). Whole blocks are still
// checked against their checksums.
func TestCallerChecksDeletedSkipsTheStat(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	data, _, dr := twoPointsSharingHalf(t, r, 5)
	dr.CallerChecksDeleted()
	part := make([]byte, 4096)
	off := int64(6*testBS + 100) // in point 1's own half
	for i := 0; i < 2; i++ {     // the first read checks the block, the second does not
		if _, err := dr.ReadAt(part, off); err != nil || !bytes.Equal(part, data[off:off+4096]) {
			t.Fatalf("partial read before the forget: %v", err)
		}
	}
	if _, err := r.Forget(ctx, "vm", []string{"1"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := dr.ReadAt(part, off); err != nil {
		t.Fatalf("partial read with the deletion check left to the caller: %v, want no check (nil)", err)
	}
	whole := make([]byte, testBS)
	if _, err := dr.ReadAt(whole, 6*testBS); err == nil && !bytes.Equal(whole, data[6*testBS:7*testBS]) {
		t.Fatal("a whole-block read of a released block returned released bytes")
	}
}

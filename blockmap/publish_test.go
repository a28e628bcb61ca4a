package blockmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// twoPointsSharingHalf commits two points of VM "vm" with one disk "d" of
// 8 blocks of random non-zero bytes, the second sharing its first half
// with the first, and opens a reader of the first point.
func twoPointsSharingHalf(t *testing.T, r *Repo, seed uint64) (data, other []byte, dr *DiskReader) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	data = make([]byte, 8*testBS)
	for i := range data {
		data[i] = byte(rng.Uint32()) | 1
	}
	p1 := pointOf(t, r, "vm", true, "d", data)
	other = bytes.Clone(data)
	for i := len(other) / 2; i < len(other); i++ {
		other[i]++
	}
	pointOf(t, r, "vm", true, "d", other)
	dr, err := r.OpenDisk(context.Background(), p1, "d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dr.Close() })
	return data, other, dr
}

// TestForgetUnpublishedReleasesNothing: when catalog.seq cannot be written
// (immutable here; ENOSPC or a quota in life), a forget deletes the point
// but releases none of its bytes, and says so; a reader that had the point
// open still reads the right bytes. Once the file is writable again, the
// next writer publishes the deletion and releases the space. (Issue #12,
// item 3.)
func TestForgetUnpublishedReleasesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		missingPrereq(t, "root privileges (chattr +i)")
	}
	requireTools(t, "chattr")
	ctx := context.Background()
	r := newTestRepo(t)
	data, other, dr := twoPointsSharingHalf(t, r, 3)
	seq := filepath.Join(r.Dir(), "catalog.seq")
	if out, err := exec.Command("chattr", "+i", seq).CombinedOutput(); err != nil {
		missingPrereq(t, fmt.Sprintf("chattr +i on the temporary directory's filesystem: %v %s", err, out))
	}
	defer exec.Command("chattr", "-i", seq).Run()
	_, err := r.Forget(ctx, "vm", []string{"1"}, false)
	if !errors.Is(err, ErrNotReleased) {
		t.Fatalf("forget with catalog.seq unwritable: %v, want ErrNotReleased", err)
	}
	if pts, _ := r.Points(ctx, "vm"); len(pts) != 1 {
		t.Fatalf("%d points after forget, want 1", len(pts))
	}
	got := make([]byte, len(data))
	if _, err := dr.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatalf("read of the forgotten point before readers were told: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("a forgotten point's bytes were released before readers could know")
	}
	// Still unwritable: a backup of the VM does not release them either.
	pointOf(t, r, "vm", true, "d", other)
	if _, err := dr.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a backup released the bytes of an unpublished deletion: %v", err)
	}
	if err := exec.Command("chattr", "-i", seq).Run(); err != nil {
		t.Fatal(err)
	}
	pointOf(t, r, "vm", true, "d", other)
	st, err := r.CatalogState()
	if err != nil {
		t.Fatal(err)
	}
	if gone, _ := st.Gone(PointRef{VM: "vm", Gen: 1}, 0); !gone {
		t.Fatalf("catalog.seq does not list the deleted point: %+v", st)
	}
	if probs, err := r.Check(ctx); err != nil || len(probs) > 0 {
		t.Fatalf("check after the space was released: %v %v", err, probs)
	}
	// Its own bytes are released now, and the reader says so: deleted, not
	// corrupt (the shared half still reads).
	if _, err := dr.ReadAt(got[:len(got)/2], 0); err != nil || !bytes.Equal(got[:len(got)/2], data[:len(data)/2]) {
		t.Fatalf("read of the half a retained point shares: %v", err)
	}
	_, err = dr.ReadAt(got, 0)
	if !errors.Is(err, ErrPointDeleted) || IsCorrupt(err) {
		t.Fatalf("read of a released point: %v, want ErrPointDeleted and not corrupt", err)
	}
}

// TestPartialReadOfDeletedPoint: a part of a block that the reader checked
// before is read without a checksum; once the point is deleted and the
// block released, that read fails with ErrPointDeleted instead of
// returning the released bytes (zeros). (Issue #12, item 2, for readers
// outside the mount: restore-file, export.)
func TestPartialReadOfDeletedPoint(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	data, _, dr := twoPointsSharingHalf(t, r, 5)
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
	_, err := dr.ReadAt(part, off)
	if err == nil && !bytes.Equal(part, data[off:off+4096]) {
		t.Fatal("a partial read of a deleted point returned released bytes")
	}
	if err != nil && !errors.Is(err, ErrPointDeleted) {
		t.Fatalf("partial read of a deleted point: %v, want ErrPointDeleted", err)
	}
	// The shared half is still the retained point's: it reads.
	if _, err := dr.ReadAt(part, 100); err != nil && !errors.Is(err, ErrPointDeleted) {
		t.Fatalf("read of the shared half: %v", err)
	}
}

// TestCatalogStateRoundTrip: deletions of VMs with any name (spaces,
// newlines, quotes) survive catalog.seq, and the oldest are trimmed.
func TestCatalogStateRoundTrip(t *testing.T) {
	r := newTestRepo(t)
	names := []string{"web01", "a b", "line\nbreak", `q"uote`, "deleted 1 2 x"}
	for i, vm := range names {
		if err := r.publishDeleted(vm, []uint32{uint32(i + 1), 99}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.CatalogState()
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq != uint64(len(names)) {
		t.Errorf("seq %d, want %d", st.Seq, len(names))
	}
	for i, vm := range names {
		if gone, known := st.Gone(PointRef{VM: vm, Gen: uint32(i + 1)}, 0); !gone || !known {
			t.Errorf("deletion of %q generation %d not listed", vm, i+1)
		}
	}
	if gone, _ := st.Gone(PointRef{VM: "web01", Gen: 2}, 0); gone {
		t.Error("a point never deleted is listed")
	}
	r.bumpCatalogSeq()
	if st2, err := r.CatalogState(); err != nil || len(st2.Deleted) != len(st.Deleted) || st2.Seq != st.Seq+1 {
		t.Errorf("a commit's bump lost deletions: %v %+v", err, st2)
	}
	for i := 0; i < keepTombstones; i += 100 {
		var gens []uint32
		for g := i; g < i+100; g++ {
			gens = append(gens, uint32(g+1))
		}
		if err := r.publishDeleted("many", gens); err != nil {
			t.Fatal(err)
		}
	}
	st, err = r.CatalogState()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Deleted) != keepTombstones || st.Trimmed == 0 {
		t.Fatalf("%d deletions listed, trimmed %d", len(st.Deleted), st.Trimmed)
	}
	if _, known := st.Gone(PointRef{VM: "web01", Gen: 1}, 0); known {
		t.Error("a view older than the trimmed deletions is told it knows")
	}
	if _, known := st.Gone(PointRef{VM: "web01", Gen: 1}, st.Trimmed); !known {
		t.Error("a view newer than the trimmed deletions is told it does not know")
	}
}

// TestDamagedCatalogSeqIsRewritten: a catalog.seq that cannot be parsed
// (readers refuse to trust it) is written anew by the next commit, and
// readers are told to read the catalog itself.
func TestDamagedCatalogSeqIsRewritten(t *testing.T) {
	r := newTestRepo(t)
	pointOf(t, r, "vm", true, "d", bytes.Repeat([]byte{3}, testBS))
	if err := os.WriteFile(filepath.Join(r.Dir(), "catalog.seq"), []byte("garbage\x00\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CatalogState(); err == nil {
		t.Fatal("a damaged catalog.seq parses")
	}
	pointOf(t, r, "vm", true, "d", bytes.Repeat([]byte{4}, testBS))
	st, err := r.CatalogState()
	if err != nil {
		t.Fatalf("catalog.seq after a commit: %v", err)
	}
	if _, known := st.Gone(PointRef{VM: "vm", Gen: 1}, 5); known {
		t.Error("readers with an older view are not sent to the catalog")
	}
}

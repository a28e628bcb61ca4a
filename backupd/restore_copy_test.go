package backupd

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// fileTarget opens path as a write target the way the hotadd transport
// writes a device (pwrite, punched holes, fsync).
func fileTarget(t *testing.T, path string, size int64) *hotaddTarget {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return &hotaddTarget{f: f, size: size, detach: func() error { return nil }}
}

// failingReader fails reads that reach into [bad, bad+1).
type failingReader struct {
	src  *bytes.Reader
	bad  int64
	seen atomic.Int64
}

var errBadBlock = errors.New("bad block")

func (r *failingReader) ReadAt(p []byte, off int64) (int, error) {
	r.seen.Add(1)
	if r.bad >= 0 && off <= r.bad && r.bad < off+int64(len(p)) {
		return 0, errBadBlock
	}
	return r.src.ReadAt(p, off)
}

// TestCopyExtentsWritesDataAndZeros copies scattered data extents (a
// quick rollback's shape: hundreds of single blocks, plus chunks larger
// than one piece) and zero ranges into a file that holds other bytes
// with many workers: the data ranges then equal the source, the zero
// ranges read as zeros, everything else is untouched,
// and the counts are exact. Zero ranges under smallZeroRange stay
// allocated (zeroed in place), larger ones become holes. A read error
// stops the copy with that error.
func TestCopyExtentsWritesDataAndZeros(t *testing.T) {
	const size = 64 << 20
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	var work, zeros []blockmap.Extent
	var wantData, wantZero, bigZero int64
	for b := int64(0); b < size/(64<<10); b++ {
		e := blockmap.Extent{Offset: b * 64 << 10, Length: 64 << 10}
		switch {
		case b >= 800 && b < 864: // a large zero range: punched
			if b == 800 {
				zeros = append(zeros, blockmap.Extent{Offset: e.Offset, Length: 64 * 64 << 10})
				wantZero += 64 * 64 << 10
				bigZero += 64 * 64 << 10
			}
		case b >= 512 && b < 700: // one long extent: several pieces
			if b == 512 {
				work = append(work, blockmap.Extent{Offset: e.Offset, Length: 188 * 64 << 10})
				wantData += 188 * 64 << 10
			}
		case b%7 == 0:
			work = append(work, e)
			wantData += e.Length
		case b%11 == 0:
			zeros = append(zeros, e)
			wantZero += e.Length
		}
	}
	old := bytes.Repeat([]byte{0xaa}, size)
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	tg := fileTarget(t, path, size)
	var progress atomic.Int64
	r := &failingReader{src: bytes.NewReader(src), bad: -1}
	written, zeroed, err := copyExtents(context.Background(), r, tg, work, zeros, 1<<20, 16, func(n int64) { progress.Add(n) })
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	tg.Close()
	if written != wantData || zeroed != wantZero || progress.Load() != wantData {
		t.Errorf("written %d zeroed %d progress %d; want %d, %d, %d", written, zeroed, progress.Load(), wantData, wantZero, wantData)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), old...)
	for _, e := range work {
		copy(want[e.Offset:e.Offset+e.Length], src[e.Offset:])
	}
	for _, z := range zeros {
		clear(want[z.Offset : z.Offset+z.Length])
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the target differs from the source's data, zeros and untouched bytes")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if allocated := st.Blocks * 512; allocated > size-bigZero+(1<<20) {
		t.Errorf("%d bytes allocated: the large zero range was written, not punched", allocated)
	} else if allocated < size-bigZero-(1<<20) {
		t.Errorf("%d bytes allocated, want %d: the small zero ranges were punched, not zeroed in place", allocated, size-bigZero)
	}

	// a bad block in the middle stops the copy with its error
	tg = fileTarget(t, path, size)
	defer tg.Close()
	r = &failingReader{src: bytes.NewReader(src), bad: 600 * 64 << 10}
	_, _, err = copyExtents(context.Background(), r, tg, work, zeros, 1<<20, 4, func(int64) {})
	if !errors.Is(err, errBadBlock) {
		t.Fatalf("copy over a bad block: %v", err)
	}
	if n := r.seen.Load(); n >= int64(len(work)) {
		t.Errorf("%d reads after the error (of %d data pieces): the copy did not stop", n, len(work))
	}
}

package copier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// offsetsReader records the reads made of a real source file.
type offsetsReader struct {
	f     *os.File
	mu    sync.Mutex
	reads []blockmap.Extent
}

func (r *offsetsReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.reads = append(r.reads, blockmap.Extent{Offset: off, Length: int64(len(p))})
	r.mu.Unlock()
	return r.f.ReadAt(p, off)
}

// TestCopyChunksEndOnMultiples: extents that start off a chunk boundary
// (a partition at 1 MiB) are copied in chunks that end on multiples of the
// chunk size, so the delta image's extents do too and the page cache's
// large folios of a later read never straddle two of them.
func TestCopyChunksEndOnMultiples(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const size = 24 << 20
	const chunk = 4 << 20
	extents := []blockmap.Extent{{Offset: 1 << 20, Length: 9<<20 + 64<<10}, {Offset: 13<<20 + 128<<10, Length: 6 << 20}}
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, e := range extents {
		for i := e.Offset; i < e.Offset+e.Length; i++ {
			data[i] = byte(rng.Uint32())
		}
	}
	src := filepath.Join(dir, "src.img")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "d0", size, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	in := &offsetsReader{f: f}
	read, err := Copy(ctx, in, w, Align(extents, w.BlockSize(), size), Options{Workers: 3, ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	if read != Total(extents) {
		t.Fatalf("read %d bytes, want %d", read, Total(extents))
	}
	for _, r := range in.reads {
		if r.Offset%chunk+r.Length > chunk {
			t.Errorf("read of %d bytes at %d crosses the chunk boundary at %d", r.Length, r.Offset, (r.Offset/chunk+1)*chunk)
		}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := repo.OpenDisk(ctx, p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	got := make([]byte, size)
	if _, err := dr.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("point differs from the source")
	}
}

package copier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

func TestAlign(t *testing.T) {
	const bs = 65536
	cases := []struct {
		name string
		in   []blockmap.Extent
		size int64
		want []blockmap.Extent
	}{
		{"empty", nil, 10 * bs, nil},
		{"inside one block", []blockmap.Extent{{Offset: 100, Length: 10}}, 10 * bs, []blockmap.Extent{{Offset: 0, Length: bs}}},
		{"crossing a boundary", []blockmap.Extent{{Offset: bs - 1, Length: 2}}, 10 * bs, []blockmap.Extent{{Offset: 0, Length: 2 * bs}}},
		{"merged and sorted", []blockmap.Extent{{Offset: 5 * bs, Length: bs}, {Offset: 0, Length: 1}, {Offset: 4*bs + 7, Length: 1}}, 10 * bs,
			[]blockmap.Extent{{Offset: 0, Length: bs}, {Offset: 4 * bs, Length: 2 * bs}}},
		{"clipped at a short last block", []blockmap.Extent{{Offset: 9 * bs, Length: 5 * bs}}, 9*bs + 100, []blockmap.Extent{{Offset: 9 * bs, Length: 100}}},
		{"past the end and empty dropped", []blockmap.Extent{{Offset: 20 * bs, Length: bs}, {Offset: bs, Length: 0}, {Offset: -5, Length: 3}}, 10 * bs, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Align(c.in, bs, c.size); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Align = %v, want %v", got, c.want)
			}
		})
	}
}

// TestCopyIntoRepository copies a sparse file's data extents into a real
// repository and reads the point back.
func TestCopyIntoRepository(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	const size = 3<<20 + 12345
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range [][2]int{{0, 300000}, {1 << 20, 1<<20 + 70000}, {size - 5000, size}} {
		for i := r[0]; i < r[1]; i++ {
			data[i] = byte(rng.Uint32())
		}
	}
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	for _, r := range [][2]int{{0, 300000}, {1 << 20, 1<<20 + 70000}, {size - 5000, size}} {
		f.WriteAt(data[r[0]:r[1]], int64(r[0]))
	}
	f.Close()
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	in, gotSize, err := OpenSource(src)
	if err != nil || gotSize != size {
		t.Fatalf("OpenSource: %d %v", gotSize, err)
	}
	defer in.Close()
	ext, err := DataExtents(in, size)
	if err != nil {
		t.Fatal(err)
	}
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "d0", size, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	aligned := Align(ext, w.BlockSize(), size)
	read, err := Copy(ctx, in, w, aligned, Options{Workers: 3, ChunkSize: 200000})
	if err != nil {
		t.Fatal(err)
	}
	if read != Total(aligned) || read >= size {
		t.Fatalf("read %d bytes, want %d (only the data extents)", read, Total(aligned))
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
	// A source that ends early is a clear error, not a short point.
	short := filepath.Join(dir, "short.img")
	os.WriteFile(short, data[:1000], 0o644)
	sf, _ := os.Open(short)
	defer sf.Close()
	s2, _ := repo.BeginPoint(ctx, "vm2", blockmap.PointOptions{})
	defer s2.Abort(ctx)
	w2, _ := s2.AddDisk(ctx, "d0", size, blockmap.DiskOptions{Full: true})
	if _, err := Copy(ctx, sf, w2, []blockmap.Extent{{Offset: 0, Length: 1 << 20}}, Options{}); err == nil {
		t.Fatal("copy from a source shorter than the disk succeeded")
	}
	if _, _, err := OpenSource(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("OpenSource of a missing file succeeded")
	}
}

package copier

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/cairnbackup/cairn/internal/directio"
)

// TestFileReader reads a file whose size is not a multiple of 4 KiB
// through FileReader with aligned and unaligned buffers, offsets and
// lengths, and across the end, and compares every answer with a plain
// os.File's (bytes, count and io.EOF).
func TestFileReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "src.img")
	const size = 1<<20 + 5000
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Dirty page cache contents must be what a direct read sees too.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	copy(data[8192:], "written but not yet synced")
	if _, err := f.WriteAt(data[8192:8192+26], 8192); err != nil {
		t.Fatal(err)
	}
	r := NewFileReader(f)
	defer r.Close()
	t.Logf("direct I/O: %v", r.Direct())
	big := directio.AlignedBuffer(2 << 20)
	if uintptr(unsafe.Pointer(&big[0]))%directio.BufferAlign != 0 {
		t.Fatal("AlignedBuffer is not aligned")
	}
	cases := []struct {
		name     string
		off, n   int64
		shiftBuf int
	}{
		{"aligned", 0, 64 << 10, 0},
		{"aligned middle", 512 << 10, 256 << 10, 0},
		{"unaligned buffer", 4096, 8192, 1},
		{"unaligned offset", 100, 8192, 0},
		{"unaligned length", 4096, 1000, 0},
		{"tail exactly", 1 << 20, 5000, 0},
		{"aligned across the end", 1 << 20, 8192, 0},
		{"aligned request past the end", 960 << 10, 128 << 10, 0},
		{"past the end", size + 4096, 4096, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := big[c.shiftBuf : c.shiftBuf+int(c.n)]
			n, err := r.ReadAt(got, c.off)
			want := make([]byte, c.n)
			wn, werr := f.ReadAt(want, c.off)
			if n != wn || (err == io.EOF) != (werr == io.EOF) || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt = %d, %v; os.File gives %d, %v", n, err, wn, werr)
			}
			if !bytes.Equal(got[:n], want[:wn]) {
				t.Fatalf("bytes differ from os.File's")
			}
			if c.off < size && !bytes.Equal(got[:n], data[c.off:c.off+int64(n)]) {
				t.Fatalf("bytes differ from the file's content")
			}
		})
	}
}

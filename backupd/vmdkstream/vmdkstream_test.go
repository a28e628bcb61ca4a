package vmdkstream

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// sourceImage makes a sparse raw image with random data spans (one of
// them ending in the partial last grain, one holding a zero grain).
func sourceImage(t *testing.T) (string, []byte, []Extent) {
	t.Helper()
	size := int64(70<<20 + 3*512) // three GT regions, a partial last grain
	img := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	exts := []Extent{{0, 3 * GrainSize}, {5<<20 + 4096, 300 << 10}, {40 << 20, 2 << 20}, {size - 100<<10, 100 << 10}}
	for _, e := range exts {
		for i := e.Offset; i < e.Offset+e.Length; i++ {
			img[i] = byte(rng.Uint32())
		}
	}
	clear(img[40<<20+GrainSize : 40<<20+2*GrainSize]) // a zero grain inside data
	path := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, img, exts
}

// TestWriteReadByQemuImg writes a stream, checks it with qemu-img and
// converts it with qemu-img and with Convert: both give the source back;
// zero grains and holes are not stored, and Convert keeps them holes.
func TestWriteReadByQemuImg(t *testing.T) {
	testutil.RequireTools(t, "qemu-img")
	src, img, exts := sourceImage(t)
	dir := t.TempDir()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stream := filepath.Join(dir, "disk.vmdk")
	out, err := os.Create(stream)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Write(out, f, int64(len(img)), exts, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
	var data int64
	for _, e := range exts {
		data += (e.Offset+e.Length+GrainSize-1)/GrainSize*GrainSize - e.Offset/GrainSize*GrainSize
	}
	if st.DataBytes >= data || st.DataBytes < data-2*GrainSize {
		t.Errorf("stored %d bytes of grains; the data touches %d bytes of grains, one of them zero", st.DataBytes, data)
	}
	if o, err := exec.Command("qemu-img", "check", "-f", "vmdk", stream).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v: %s", err, o)
	}
	q := filepath.Join(dir, "q.raw")
	if o, err := exec.Command("qemu-img", "convert", "-f", "vmdk", "-O", "raw", stream, q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, o)
	}
	if got, _ := os.ReadFile(q); !bytes.Equal(got, img) {
		t.Fatal("qemu-img's conversion of the stream differs from the source")
	}
	c := convertFile(t, stream, filepath.Join(dir, "c.raw"), int64(len(img)))
	if !bytes.Equal(c, img) {
		t.Fatal("Convert's raw image differs from the source")
	}
}

func convertFile(t *testing.T, stream, dst string, wantSize int64) []byte {
	t.Helper()
	in, err := os.Open(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	capacity, written, err := Convert(in, out)
	out.Close()
	if err != nil {
		t.Fatal(err)
	}
	if capacity != wantSize {
		t.Errorf("capacity %d, want %d", capacity, wantSize)
	}
	if allocated := blocks(t, dst); allocated > written+GrainSize {
		t.Errorf("converted image allocates %d bytes for %d written: holes were filled", allocated, written)
	}
	b, _ := os.ReadFile(dst)
	return b
}

// TestConvertQemuStream converts a streamOptimized VMDK made by qemu-img
// (an independent writer) and a truncated stream (an error, not a short
// image taken as good).
func TestConvertQemuStream(t *testing.T) {
	testutil.RequireTools(t, "qemu-img")
	src, img, _ := sourceImage(t)
	dir := t.TempDir()
	stream := filepath.Join(dir, "q.vmdk")
	if o, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", src, stream).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, o)
	}
	if got := convertFile(t, stream, filepath.Join(dir, "c.raw"), int64(len(img))); !bytes.Equal(got, img) {
		t.Fatal("Convert of qemu-img's stream differs from the source")
	}
	b, _ := os.ReadFile(stream)
	cut := filepath.Join(dir, "cut.vmdk")
	if err := os.WriteFile(cut, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	in, _ := os.Open(cut)
	defer in.Close()
	out, _ := os.Create(filepath.Join(dir, "cut.raw"))
	defer out.Close()
	if _, _, err := Convert(in, out); err == nil {
		t.Fatal("a truncated stream converted without error")
	}
}

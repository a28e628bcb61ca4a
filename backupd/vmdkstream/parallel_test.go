package vmdkstream

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// TestWriteSameStreamForAnyWorkers writes the same disk with one and with
// eight compressing goroutines: the grains, tables and footer after the
// descriptor are the same bytes (the order of the stream does not depend
// on which worker finished first), and the stream converts back to the
// source.
func TestWriteSameStreamForAnyWorkers(t *testing.T) {
	src, img, exts := sourceImage(t)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var streams [][]byte
	for _, w := range []int{1, 8} {
		var out bytes.Buffer
		if _, err := Write(&out, f, int64(len(img)), exts, Options{Workers: w}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, out.Bytes())
	}
	over := GrainSize // the header and descriptor (its CID is random) fit in the first grain's worth of sectors
	if len(streams[0]) != len(streams[1]) || !bytes.Equal(streams[0][over:], streams[1][over:]) {
		t.Fatalf("streams of 1 and 8 workers differ (%d and %d bytes)", len(streams[0]), len(streams[1]))
	}
	dst, err := os.Create(t.TempDir() + "/c.raw")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, _, err := Convert(bytes.NewReader(streams[1]), dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst.Name()); !bytes.Equal(got, img) {
		t.Fatal("the 8-worker stream does not convert back to the source")
	}
}

// failAt is a disk whose reads fail from offset at on.
type failAt struct {
	r  io.ReaderAt
	at int64
}

var errDisk = errors.New("disk read failed")

func (f failAt) ReadAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > f.at {
		return 0, errDisk
	}
	return f.r.ReadAt(b, off)
}

type failWriter struct{ left int }

var errSink = errors.New("upload failed")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.left < len(p) {
		return 0, errSink
	}
	w.left -= len(p)
	return len(p), nil
}

// TestWriteStopsOnErrors: a read error of the disk and a write error of
// the upload both end Write with that error (no hang, no stream taken as
// whole).
func TestWriteStopsOnErrors(t *testing.T) {
	src, img, exts := sourceImage(t)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all := []Extent{{0, int64(len(img))}}
	if _, err := Write(io.Discard, failAt{f, 41 << 20}, int64(len(img)), all, Options{Workers: 4}); !errors.Is(err, errDisk) {
		t.Errorf("read error: %v", err)
	}
	if _, err := Write(&failWriter{left: 512 << 10}, f, int64(len(img)), exts, Options{Workers: 4}); !errors.Is(err, errSink) {
		t.Errorf("write error: %v", err)
	}
}

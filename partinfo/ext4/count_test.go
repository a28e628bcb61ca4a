package ext4

import (
	"io"
	"os"
	"sync/atomic"
	"testing"
)

// countingReader counts the reads issued to the underlying image.
type countingReader struct {
	r     io.ReaderAt
	calls atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.calls.Add(1)
	return c.r.ReadAt(p, off)
}

// checkLargeReads reads a file in 8 MiB requests through a counting reader
// and fails if the reader went block by block instead of run by run.
func checkLargeReads(t *testing.T, img, path string) {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	cr := &countingReader{r: fh}
	fsys, err := Open(cr, 0, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	f := fsys.(*FS)
	ino := resolve(t, f, path)
	n, err := f.readInode(ino)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.fileMapOf(n)
	if err != nil {
		t.Fatal(err)
	}
	before := cr.calls.Load()
	buf := make([]byte, 8<<20)
	requests := 0
	for off := int64(0); off < n.size; off += int64(len(buf)) {
		requests++
		if _, err := f.ReadAt(ino, buf, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	if calls := cr.calls.Load() - before; calls > int64(requests+len(m.runs)) {
		t.Errorf("%s: %d underlying reads for %d requests over %d runs", path, calls, requests, len(m.runs))
	}
}

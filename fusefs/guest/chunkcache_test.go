package guest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// countingReader is a byte slice that counts its reads and fails those
// touching [badFrom, badTo).
type countingReader struct {
	data           []byte
	calls          atomic.Int64
	badFrom, badTo int64
}

var errBad = errors.New("damaged block")

func (r *countingReader) ReadAt(p []byte, off int64) (int, error) {
	r.calls.Add(1)
	if off < r.badTo && off+int64(len(p)) > r.badFrom {
		return 0, errBad
	}
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestChunkCache(t *testing.T) {
	size := int64(5*chunkSize + 1234) // ends inside a chunk
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	u := &countingReader{data: data, badFrom: 3*chunkSize + 100, badTo: 3*chunkSize + 200}
	c := newChunkCache(u, size)

	read := func(off int64, n int) ([]byte, error) {
		p := make([]byte, n)
		m, err := c.ReadAt(p, off)
		return p[:m], err
	}
	// Small reads of one chunk: one underlying read, right bytes.
	for i := int64(0); i < 16; i++ {
		got, err := read(i*256, 256)
		if err != nil || !bytes.Equal(got, data[i*256:i*256+256]) {
			t.Fatalf("read at %d: %v, wrong bytes", i*256, err)
		}
	}
	if n := u.calls.Load(); n != 1 {
		t.Errorf("16 small reads of one chunk made %d underlying reads, want 1", n)
	}
	// A read across a chunk boundary.
	off := int64(chunkSize - 10)
	if got, err := read(off, 100); err != nil || !bytes.Equal(got, data[off:off+100]) {
		t.Errorf("read across chunks: %v, wrong bytes", err)
	}
	// Large reads go straight through.
	before := u.calls.Load()
	if got, err := read(7, chunkSize); err != nil || !bytes.Equal(got, data[7:7+chunkSize]) {
		t.Errorf("large read: %v, wrong bytes", err)
	}
	if u.calls.Load() != before+1 {
		t.Errorf("a large read made %d underlying reads, want 1", u.calls.Load()-before)
	}
	// The short last chunk, and a read past the end.
	if got, err := read(size-50, 100); !errors.Is(err, io.EOF) || !bytes.Equal(got, data[size-50:]) {
		t.Errorf("read over the end: %d bytes, %v; want 50 bytes and EOF", len(got), err)
	}
	if got, err := read(size, 10); len(got) != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("read at the end: %d bytes, %v; want EOF", len(got), err)
	}
	// A damaged area fails, even for a read beside it in the same chunk
	// (the chunk cannot be read whole, so the exact range is asked), and
	// the failure is not cached.
	if _, err := read(3*chunkSize+150, 10); !errors.Is(err, errBad) {
		t.Errorf("read of a damaged range: %v, want the reader's error", err)
	}
	if got, err := read(3*chunkSize+10, 10); err != nil || !bytes.Equal(got, data[3*chunkSize+10:3*chunkSize+20]) {
		t.Errorf("read beside a damaged range: %v, wrong bytes", err)
	}
	u.badFrom, u.badTo = 0, 0
	if got, err := read(3*chunkSize+150, 10); err != nil || !bytes.Equal(got, data[3*chunkSize+150:3*chunkSize+160]) {
		t.Errorf("read after the damage went away: %v (a failure was cached)", err)
	}
}

func TestChunkCacheBounded(t *testing.T) {
	const chunks = chunkCacheBytes/chunkSize + 10
	size := int64(chunks * chunkSize)
	u := &countingReader{data: make([]byte, size)}
	c := newChunkCache(u, size)
	p := make([]byte, 1)
	for i := int64(0); i < chunks; i++ {
		if _, err := c.ReadAt(p, i*chunkSize); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.lru.Len(); n != chunkCacheBytes/chunkSize {
		t.Errorf("%d chunks cached, want at most %d", n, chunkCacheBytes/chunkSize)
	}
	// The oldest went first: chunk 0 is read again, the newest is not.
	before := u.calls.Load()
	c.ReadAt(p, (chunks-1)*chunkSize)
	if u.calls.Load() != before {
		t.Error("the newest chunk was evicted")
	}
	c.ReadAt(p, 0)
	if u.calls.Load() != before+1 {
		t.Error("the oldest chunk was kept")
	}
}

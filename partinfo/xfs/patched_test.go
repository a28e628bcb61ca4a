package xfs

import (
	"io"
	"os"
	"testing"
)

// patchedImage is an io.ReaderAt over a base image with some bytes XORed.
type patchedImage struct {
	base    io.ReaderAt
	patches map[int64]byte // offset -> XOR mask
}

func (p *patchedImage) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.base.ReadAt(b, off)
	for at, mask := range p.patches {
		if at >= off && at < off+int64(n) {
			b[at-off] ^= mask
		}
	}
	return n, err
}

// readImage loads a whole (small) image into memory.
func readImage(t testing.TB, img string) []byte {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bytesReaderAt adapts a byte slice; unlike bytes.Reader it is a plain
// value so tests can share one base image between goroutines.
type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

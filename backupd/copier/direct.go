package copier

import (
	"io"
	"os"
	"strconv"

	"github.com/cairnbackup/cairn/internal/directio"
)

// FileReader reads a local raw image or block device with O_DIRECT where
// the request allows it: the bytes go from the device into the caller's
// buffer without a copy through the page cache, and a backup does not
// evict everything else from memory. Requests whose buffer, offset or
// length is not aligned, and files that refuse O_DIRECT, are read through
// the page cache. Dirty cached pages of the file are written back by the
// kernel before a direct read, so both paths see the same bytes.
type FileReader struct {
	f      *os.File
	direct *os.File // nil when O_DIRECT is not available
	align  directio.Align
}

// NewFileReader returns a reader of f. It opens a second, direct
// descriptor of the same file; Close closes that one and leaves f open.
func NewFileReader(f *os.File) *FileReader {
	r := &FileReader{f: f}
	if d, align, err := directio.Open("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_RDONLY); err == nil {
		r.direct, r.align = d, align
	}
	return r
}

// Direct reports whether aligned reads bypass the page cache.
func (r *FileReader) Direct() bool { return r.direct != nil }

// ReadAt implements io.ReaderAt.
func (r *FileReader) ReadAt(p []byte, off int64) (int, error) {
	if r.direct == nil || !r.align.Start(p, off) || int64(len(p))%r.align.Off != 0 {
		return r.f.ReadAt(p, off)
	}
	n, err := r.direct.ReadAt(p, off)
	if err == nil || (err == io.EOF && int64(n)%r.align.Off == 0) {
		return n, err
	}
	// The direct read stopped inside an alignment unit (the end of a file
	// whose size is not aligned) or failed: the buffered descriptor reads
	// the rest and gives io.ReaderAt's usual answer, or the real error.
	m, err := r.f.ReadAt(p[n:], off+int64(n))
	return n + m, err
}

// Close closes the direct descriptor.
func (r *FileReader) Close() error {
	if r.direct != nil {
		return r.direct.Close()
	}
	return nil
}

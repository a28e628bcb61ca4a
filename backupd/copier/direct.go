package copier

import (
	"io"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bufferAlign is the address alignment of Copy's buffers: enough for
// direct I/O on every device and filesystem Linux supports.
const bufferAlign = 4096

// alignedBuffer returns n bytes whose first byte is bufferAlign-aligned,
// so that a direct read or write can use them without a bounce buffer.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+bufferAlign)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % bufferAlign); r != 0 {
		skip = bufferAlign - r
	}
	return b[skip : skip+n : skip+n]
}

// FileReader reads a local raw image or block device with O_DIRECT where
// the request allows it: the bytes go from the device into the caller's
// buffer without a copy through the page cache, and a backup does not
// evict everything else from memory. Requests whose buffer, offset or
// length is not aligned, and files that refuse O_DIRECT, are read through
// the page cache. Dirty cached pages of the file are written back by the
// kernel before a direct read, so both paths see the same bytes.
type FileReader struct {
	f        *os.File
	direct   *os.File // nil when O_DIRECT is not available
	memAlign uintptr
	offAlign int64
}

// NewFileReader returns a reader of f. It opens a second, direct
// descriptor of the same file; Close closes that one and leaves f open.
func NewFileReader(f *os.File) *FileReader {
	r := &FileReader{f: f, memAlign: bufferAlign, offAlign: bufferAlign}
	d, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return r
	}
	r.direct = d
	var st unix.Statx_t
	if unix.Statx(int(d.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st) == nil &&
		st.Mask&unix.STATX_DIOALIGN != 0 && st.Dio_offset_align > 0 {
		r.memAlign = max(uintptr(st.Dio_mem_align), 1)
		r.offAlign = max(int64(st.Dio_offset_align), 1)
	}
	return r
}

// Direct reports whether aligned reads bypass the page cache.
func (r *FileReader) Direct() bool { return r.direct != nil }

// ReadAt implements io.ReaderAt.
func (r *FileReader) ReadAt(p []byte, off int64) (int, error) {
	if r.direct == nil || len(p) == 0 || off%r.offAlign != 0 || int64(len(p))%r.offAlign != 0 ||
		uintptr(unsafe.Pointer(&p[0]))%r.memAlign != 0 {
		return r.f.ReadAt(p, off)
	}
	n, err := r.direct.ReadAt(p, off)
	if err == nil || (err == io.EOF && int64(n)%r.offAlign == 0) {
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

// Package directio opens O_DIRECT twins of files and says which requests
// they can serve: the alignment rules that cairn's direct readers
// (copier) and writers (blockmap delta images) share.
package directio

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BufferAlign is the address alignment of AlignedBuffer: enough for
// direct I/O on every device and filesystem Linux supports.
const BufferAlign = 4096

// AlignedBuffer returns n bytes whose first byte is BufferAlign-aligned,
// so that a direct read or write can use them without a bounce buffer.
func AlignedBuffer(n int) []byte {
	b := make([]byte, n+BufferAlign)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % BufferAlign); r != 0 {
		skip = BufferAlign - r
	}
	return b[skip : skip+n : skip+n]
}

// Align is what a direct request must respect: the buffer's address a
// multiple of Mem, its offset (and length) multiples of Off.
type Align struct {
	Mem uintptr
	Off int64
}

// Open opens path with flag|O_DIRECT and reads the file's alignment
// (statx STATX_DIOALIGN; BufferAlign for both where the kernel does not
// say). It fails where the filesystem refuses O_DIRECT (tmpfs).
func Open(path string, flag int) (*os.File, Align, error) {
	a := Align{Mem: BufferAlign, Off: BufferAlign}
	f, err := os.OpenFile(path, flag|unix.O_DIRECT, 0)
	if err != nil {
		return nil, a, err
	}
	var st unix.Statx_t
	if unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st) == nil &&
		st.Mask&unix.STATX_DIOALIGN != 0 && st.Dio_offset_align > 0 {
		a.Mem = max(uintptr(st.Dio_mem_align), 1)
		a.Off = max(int64(st.Dio_offset_align), 1)
	}
	return f, a, nil
}

// Start reports whether a direct request for p at off can begin: p is
// non-empty, its address and off are aligned (the length is the caller's
// to check or round down).
func (a Align) Start(p []byte, off int64) bool {
	return len(p) > 0 && off%a.Off == 0 && uintptr(unsafe.Pointer(&p[0]))%a.Mem == 0
}

package copier

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/directio"
)

// hugePage is the size of a transparent huge page (amd64, arm64 with 4
// KiB pages).
const hugePage = 2 << 20

// chunkBuffer returns an n-byte buffer for direct reads and writes and a
// function that releases it (after which the buffer must not be used).
//
// A buffer of a huge page or more is mapped on its own, aligned to huge
// pages and advised MADV_HUGEPAGE. A direct request is cut by the
// device's segment limit (virtio-blk here: 254 segments, so about 1 MiB
// of scattered 4 KiB pages): from a Go heap buffer one 4 MiB read or
// write reached the disk as five requests, from huge pages as one. On
// the virtual disks measured, where every request is a round trip
// through the hypervisor, a 1 GiB run of 4 MiB direct reads took
// 0.26-0.28 s on huge pages against 0.70-0.84 s on the heap (1 worker,
// alternating). Where the kernel gives no huge page (THP off, memory
// fragmented) the mapping still works, with 4 KiB pages.
func chunkBuffer(n int) ([]byte, func()) {
	if n < hugePage {
		return directio.AlignedBuffer(n), func() {}
	}
	size := (n + hugePage - 1) / hugePage * hugePage
	m, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return directio.AlignedBuffer(n), func() {}
	}
	skip := 0
	if r := uintptr(unsafe.Pointer(&m[0])) % hugePage; r != 0 {
		skip = int(hugePage - r)
	}
	b := m[skip : skip+size]
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // advice only: EINVAL without THP
	return b[:n:n], func() { _ = unix.Munmap(m) }
}

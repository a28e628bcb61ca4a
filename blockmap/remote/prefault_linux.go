package remote

import "golang.org/x/sys/unix"

// newBlock returns a buffer of n bytes for a block the reader will keep,
// with its pages faulted in by one madvise(MADV_POPULATE_WRITE) rather than
// one page fault each as the block is written: a cold read keeps every
// block it fetches in the cache, so each is fresh memory, and on a VM a
// fault costs microseconds (a cold 2 GiB read took 524k of them). Blocks
// of 64 KiB and more are whole pages of their own (Go allocates them page
// aligned); smaller ones, and kernels before 5.14 (EINVAL), are left to
// fault as usual.
func newBlock(n int) []byte {
	b := make([]byte, n)
	if n >= 64<<10 {
		_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	}
	return b
}

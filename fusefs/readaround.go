package fusefs

import (
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// pageSize is the kernel page size the FUSE page cache works in.
const pageSize = 4096

// maxStores bounds the page-cache stores in flight; when they are all
// busy, a read simply skips its store.
const maxStores = 16

// readAround serves reads smaller than a block from the whole block (or
// the two blocks they straddle): blockmap reads and checks the whole block
// anyway the first time. The bytes around the request are then handed to
// the kernel's page cache of the image (FUSE notify-store), so the next
// small reads of the same block (a VM booting from a point reads around)
// cost no request. Points never change, so the cached bytes stay right.
type readAround struct {
	bs     int64
	bufs   sync.Pool // *[]byte of 2 blocks
	stores chan struct{}
}

func newReadAround(blockSize int) *readAround {
	ra := &readAround{bs: int64(blockSize), stores: make(chan struct{}, maxStores)}
	ra.bufs.New = func() any { b := make([]byte, 2*ra.bs); return &b }
	return ra
}

// span returns the block-aligned range around a read of n bytes at off of
// a disk of the given size, and whether the read qualifies: smaller than
// a block and page-aligned (the kernel's page-cache reads are).
func (ra *readAround) span(off int64, n int, size int64) (start, end int64, ok bool) {
	if ra.bs <= 0 || int64(n) >= ra.bs || n <= 0 || off%pageSize != 0 || n%pageSize != 0 {
		return 0, 0, false
	}
	start = off / ra.bs * ra.bs
	end = min((off+int64(n)+ra.bs-1)/ra.bs*ra.bs, size)
	if end <= off+int64(n) && start == off {
		return 0, 0, false // nothing around the request
	}
	return start, end, true
}

// store hands the bytes of buf (read at start) outside [off, off+n) to
// the kernel's page cache of node, in the background, then returns buf to
// the pool. The requested pages themselves are left alone: the kernel
// holds them locked until the reply to the read arrives.
func (ra *readAround) store(node *gofs.Inode, bufp *[]byte, start, off int64, n, got int) {
	select {
	case ra.stores <- struct{}{}:
	default:
		ra.bufs.Put(bufp)
		return
	}
	go func() {
		defer func() {
			<-ra.stores
			ra.bufs.Put(bufp)
		}()
		buf := (*bufp)[:got]
		before := off - start
		// Whole pages only: a partial last page (the disk's end) is left
		// to the read that asks for it.
		after := int64(got) - (before + int64(n))
		after -= after % pageSize
		if before > 0 {
			if errno := node.WriteCache(start, buf[:before]); errno != 0 && errno != syscall.ENOENT {
				return
			}
		}
		if after > 0 {
			node.WriteCache(off+int64(n), buf[before+int64(n):before+int64(n)+after])
		}
	}()
}

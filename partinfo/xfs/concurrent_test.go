package xfs

import (
	"github.com/cairnbackup/cairn/internal/lru"
	"sync"
	"testing"
)

// TestConcurrent walks and reads one filesystem from several goroutines
// at once with small caches, so entries are evicted while in use (run
// with -race to check the locking).
func TestConcurrent(t *testing.T) {
	src := smallSource(t)
	x := openImage(t, protoImage(t, src, 64<<20))
	x.inodes = lru.New[uint64, *inode](8)
	x.extents = lru.New[uint64, []extent](4)
	x.dirs = lru.New[uint64, *directory](60)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { compareWithSource(t, x, src, true) })
	}
	wg.Wait()
}

package fusefs

import (
	"context"
	"sync"
)

// Read-ahead below the kernel's: the kernel sends one or two 1 MiB reads at
// a time, and a cold DiskReader read waits for each block of each delta
// image in turn. Reading the next few MiB in parallel in the background
// warms the delta images' page cache and verifies the blocks' checksums,
// so the kernel's requests find their bytes in memory (measured on the
// 20-incremental fixture: one reader ~400 MB/s, four ~1 GB/s).
const (
	prefetchChunk   = 1 << 20
	prefetchWindow  = 8 << 20 // how far ahead of a sequential reader
	prefetchWorkers = 4
	prefetchQueue   = 64
	prefetchAfter   = 2 // sequential reads before prefetching starts
)

// prefetchJob reads one chunk of a disk into the void.
type prefetchJob struct {
	e   *readerEntry
	off int64
}

// prefetcher runs the background reads of one mount.
type prefetcher struct {
	readers *readerCache
	jobs    chan prefetchJob
	wg      sync.WaitGroup
}

func newPrefetcher(ctx context.Context, readers *readerCache) *prefetcher {
	p := &prefetcher{readers: readers, jobs: make(chan prefetchJob, prefetchQueue)}
	for i := 0; i < prefetchWorkers; i++ {
		p.wg.Add(1)
		go p.work(ctx)
	}
	return p
}

func (p *prefetcher) work(ctx context.Context) {
	defer p.wg.Done()
	buf := make([]byte, prefetchChunk)
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case j := <-p.jobs:
					p.readers.release(j.e)
				default:
					return
				}
			}
		case j := <-p.jobs:
			// Errors are the foreground read's business: it reads again.
			j.e.dr.ReadAt(buf, j.off)
			p.readers.release(j.e)
		}
	}
}

// submit queues a chunk unless the queue is full; it reports success.
func (p *prefetcher) submit(e *readerEntry, off int64) bool {
	p.readers.retain(e)
	select {
	case p.jobs <- prefetchJob{e: e, off: off}:
		return true
	default:
		p.readers.release(e)
		return false
	}
}

// seqTracker detects a sequential reader of one open file and keeps the
// prefetch window ahead of it.
type seqTracker struct {
	mu    sync.Mutex
	next  int64 // where the next read starts if the reader is sequential
	run   int   // sequential reads in a row
	ahead int64 // prefetched (or queued) up to here
}

// observe records a read of [off, off+n) and queues prefetches when the
// reader is sequential.
func (s *seqTracker) observe(p *prefetcher, e *readerEntry, off int64, n int, size int64) {
	if p == nil {
		return
	}
	end := off + int64(n)
	s.mu.Lock()
	// The kernel's read-ahead requests run concurrently and may arrive a
	// little out of order: near the last end counts as sequential.
	if off >= s.next-prefetchWindow && off <= s.next+prefetchWindow {
		s.run++
	} else {
		s.run, s.ahead = 0, 0
	}
	s.next = max(s.next, end)
	if s.run == 0 {
		s.next = end
	}
	if s.run < prefetchAfter {
		s.mu.Unlock()
		return
	}
	from := max(s.ahead, end)
	to := min(end+prefetchWindow, size)
	// Queue whole chunks only, aligned, so neighbouring windows do not overlap.
	from = (from + prefetchChunk - 1) / prefetchChunk * prefetchChunk
	for ; from < to; from += prefetchChunk {
		if !p.submit(e, from) {
			break
		}
	}
	s.ahead = from
	s.mu.Unlock()
}

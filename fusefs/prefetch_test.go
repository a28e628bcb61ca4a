package fusefs

import (
	"context"
	"log/slog"
	"testing"
)

func TestSeqTrackerQueuesAheadOfSequentialReaders(t *testing.T) {
	repo, pts := testRepo(t, 1)
	c := newReaderCache(context.Background(), repo, slog.New(slog.DiscardHandler), 4, 1<<30)
	e, err := c.acquire(pts[0], "disk0")
	if err != nil {
		t.Fatal(err)
	}
	p := &prefetcher{readers: c, jobs: make(chan prefetchJob, prefetchQueue)} // no workers: inspect the queue
	var s seqTracker
	const size = 64 << 20
	queued := func() []int64 {
		var offs []int64
		for {
			select {
			case j := <-p.jobs:
				offs = append(offs, j.off)
				c.release(j.e)
			default:
				return offs
			}
		}
	}
	s.observe(p, e, 0, 1<<20, size)
	s.observe(p, e, 1<<20, 1<<20, size)
	if got := queued(); len(got) != 8 || got[0] != 2<<20 || got[7] != 9<<20 {
		t.Errorf("after two sequential reads queued %v, want 8 chunks from 2 MiB", got)
	}
	s.observe(p, e, 2<<20, 1<<20, size)
	if got := queued(); len(got) != 1 || got[0] != 10<<20 {
		t.Errorf("next sequential read queued %v, want the chunk at 10 MiB", got)
	}
	s.observe(p, e, 40<<20, 4096, size)
	s.observe(p, e, 7<<20, 4096, size)
	if got := queued(); len(got) != 0 {
		t.Errorf("random reads queued %v", got)
	}
	s.observe(p, e, size-(1<<20), 1<<20, size)
	s.observe(p, e, size-(1<<20), 1<<20, size)
	if got := queued(); len(got) != 0 {
		t.Errorf("reads at the end queued %v beyond the end", got)
	}
	c.release(e)
	if e.refs != 0 {
		t.Errorf("references leaked: %d", e.refs)
	}
}

package guest

import (
	"io/fs"
	"sync"

	"github.com/cairnbackup/cairn/partinfo"
)

// A tree walk (find, tar, ls -R) lists a directory and then descends into
// its subdirectories one at a time, and every listing of a cold volume
// waits for reads of the stored blocks: the directory's blocks, then its
// entries' inodes (READDIRPLUS answers each entry's attributes). The
// prefetcher overlaps the directory reads: once a directory is listed, a
// few workers list its subdirectories in the background, so that the walk
// finds their listings ready. (Reading the entries' inodes ahead as well
// gave nothing more: they sit together in a few chunks.) The newest
// directories go first, in listing order (a walk goes depth first); a
// request for a directory being listed waits for that listing. The work
// is bounded: one level ahead of what was listed, maxPrefetchQueue
// directories waiting, maxPrefetchNames names held.
const (
	prefetchWorkers  = 4
	maxPrefetchQueue = 1024
	maxPrefetchNames = 100_000
)

type prefetcher struct {
	mu       sync.Mutex
	queue    []uint64 // directories to list, next last
	queued   map[uint64]bool
	inflight map[uint64]chan struct{}       // being listed; closed when done
	listings map[uint64][]partinfo.DirEntry // listed ahead, not yet asked for
	names    int
	workers  int
}

func newPrefetcher() *prefetcher {
	return &prefetcher{queued: map[uint64]bool{}, inflight: map[uint64]chan struct{}{}, listings: map[uint64][]partinfo.DirEntry{}}
}

// newDirCacheFor is the directory cache of a volume of type typ. It lists
// ahead on ext2/3/4, whose directory blocks lie scattered between the
// files (a cold find of a root tree waits for some 1,100 of them). XFS
// keeps most directories inside their inodes, next to each other, so
// listing ahead saved no reads there and made find slower (0.76 -> 0.96 s,
// alternating rounds); NTFS, FAT, exFAT and btrfs serialise every call of
// their reader, so work ahead would only queue in front of the walk's
// own requests.
func newDirCacheFor(typ string) *dirCache {
	c := newDirCache()
	switch typ {
	case "ext2", "ext3", "ext4":
		c.ahead = newPrefetcher()
	}
	switch typ {
	case "ext2", "ext3", "ext4", "xfs":
		c.store = newStorer()
	}
	return c
}

// take returns (and forgets) the listing of dir when it was listed ahead,
// waiting for it when a worker is listing it right now.
func (p *prefetcher) take(dir uint64) ([]partinfo.DirEntry, bool) {
	if p == nil {
		return nil, false
	}
	p.mu.Lock()
	if ch, ok := p.inflight[dir]; ok {
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	es, ok := p.listings[dir]
	if ok {
		delete(p.listings, dir)
		p.names -= len(es)
	}
	return es, ok
}

// ahead queues the subdirectories of a listing just made for listing in
// the background. Errors there are dropped: the walk's own request
// reports them.
func (p *prefetcher) ahead(fsys partinfo.Filesystem, entries []partinfo.DirEntry) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Last entry first: the walk descends in listing order, and the queue
	// is taken from its end.
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Type&fs.ModeDir == 0 || p.queued[e.Ino] {
			continue
		}
		p.queued[e.Ino] = true
		p.queue = append(p.queue, e.Ino)
	}
	if len(p.queue) > maxPrefetchQueue {
		for _, ino := range p.queue[:len(p.queue)-maxPrefetchQueue] {
			delete(p.queued, ino)
		}
		p.queue = append(p.queue[:0], p.queue[len(p.queue)-maxPrefetchQueue:]...)
	}
	for p.workers < prefetchWorkers && p.workers < len(p.queue) {
		p.workers++
		go p.work(fsys)
	}
}

func (p *prefetcher) work(fsys partinfo.Filesystem) {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.workers--
			p.mu.Unlock()
			return
		}
		dir := p.queue[len(p.queue)-1]
		p.queue = p.queue[:len(p.queue)-1]
		p.inflight[dir] = make(chan struct{})
		p.mu.Unlock()

		p.done(dir, listAhead(fsys, dir))
	}
}

// listAhead lists dir; nil when that fails, even by a panic of the
// reader (the walk's own request then reports it).
func listAhead(fsys partinfo.Filesystem, dir uint64) (es []partinfo.DirEntry) {
	defer func() {
		if recover() != nil {
			es = nil
		}
	}()
	es, err := fsys.ReadDir(dir)
	if err != nil {
		return nil
	}
	return es
}

// done keeps a listing made ahead (unless too many names are held) and
// lets the directory be queued again later.
func (p *prefetcher) done(dir uint64, es []partinfo.DirEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.queued, dir)
	close(p.inflight[dir])
	delete(p.inflight, dir)
	if es != nil && p.names+len(es) <= maxPrefetchNames {
		if old, ok := p.listings[dir]; ok {
			p.names -= len(old)
		}
		p.listings[dir] = es
		p.names += len(es)
	}
}

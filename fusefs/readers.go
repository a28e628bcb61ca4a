package fusefs

import (
	"container/list"
	"context"
	"log/slog"
	"sync"

	"github.com/cairnbackup/cairn/blockmap"
)

// readerKey names one disk of one recovery point.
type readerKey struct {
	pointKey
	Disk string
}

// readerEntry is a shared DiskReader with a reference count.
type readerEntry struct {
	key   readerKey
	ready chan struct{} // closed when dr/err are set
	dr    Disk
	err   error
	refs  int
	dead  bool          // its point was deleted: close when unused
	idle  *list.Element // position in the idle list while refs == 0
	cost  int64
}

// readerCache shares DiskReaders between open files and keeps a bounded
// number of idle ones, because building a reader reads the index.
type readerCache struct {
	repo    Source
	log     *slog.Logger
	ctx     context.Context
	maxIdle int
	budget  int64

	mu       sync.Mutex
	entries  map[readerKey]*readerEntry
	idle     list.List // front: most recently used
	idleCost int64
}

func newReaderCache(ctx context.Context, repo Source, log *slog.Logger, maxIdle int, budget int64) *readerCache {
	return &readerCache{repo: repo, log: log, ctx: ctx, maxIdle: maxIdle, budget: budget, entries: map[readerKey]*readerEntry{}}
}

// readerCost is the memory of an open reader: its block map (sized by the
// disk's data, not its size) and a little more.
func readerCost(d Disk) int64 {
	if m, ok := d.(interface{ MapBytes() int64 }); ok {
		return m.MapBytes() + 4096
	}
	return 4096
}

// acquire returns the reader of a disk of a point, opening it when no one
// has it. Callers must release it.
func (c *readerCache) acquire(p blockmap.Point, disk string) (*readerEntry, error) {
	key := readerKey{pointKey{p.VM, p.Gen}, disk}
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && !e.dead {
		e.refs++
		if e.idle != nil {
			c.idle.Remove(e.idle)
			e.idle = nil
			c.idleCost -= e.cost
		}
		c.mu.Unlock()
		<-e.ready
		if e.err != nil {
			c.release(e)
			return nil, e.err
		}
		return e, nil
	}
	e = &readerEntry{key: key, ready: make(chan struct{}), refs: 1, cost: 4096}
	c.entries[key] = e
	c.mu.Unlock()

	// The open serves every waiter, so it must not end with the request
	// that happened to start it.
	e.dr, e.err = c.repo.OpenDisk(c.ctx, p, disk)
	if e.err == nil {
		c.mu.Lock()
		e.cost = readerCost(e.dr)
		c.mu.Unlock()
	}
	close(e.ready)
	if e.err != nil {
		err := e.err
		c.release(e)
		return nil, err
	}
	return e, nil
}

// retain adds a reference to an entry the caller already holds.
func (c *readerCache) retain(e *readerEntry) {
	c.mu.Lock()
	e.refs++
	c.mu.Unlock()
}

// release drops one reference; unused readers become idle or are closed.
func (c *readerCache) release(e *readerEntry) {
	var toClose []Disk
	c.mu.Lock()
	e.refs--
	if e.refs == 0 {
		if e.err != nil || e.dead {
			if c.entries[e.key] == e {
				delete(c.entries, e.key)
			}
			if e.dr != nil {
				toClose = append(toClose, e.dr)
			}
		} else {
			e.idle = c.idle.PushFront(e)
			c.idleCost += e.cost
			// The reader just released stays even when it alone is over
			// the memory budget: files opened without OPEN (noopen.go)
			// borrow it again for their next read.
			for c.idle.Len() > 1 && (c.idle.Len() > c.maxIdle || c.idleCost > c.budget) {
				old := c.idle.Remove(c.idle.Back()).(*readerEntry)
				old.idle = nil
				c.idleCost -= old.cost
				delete(c.entries, old.key)
				toClose = append(toClose, old.dr)
			}
		}
	}
	c.mu.Unlock()
	for _, dr := range toClose {
		dr.Close()
	}
}

// forget closes the readers of points that are no longer in the catalog.
// Readers still in use are closed by their last release; reads through
// them fail from now on (the catalog check in the read path).
func (c *readerCache) forget(gone func(pointKey) bool) {
	var toClose []Disk
	c.mu.Lock()
	for key, e := range c.entries {
		if !gone(key.pointKey) {
			continue
		}
		e.dead = true
		delete(c.entries, key)
		if e.idle != nil {
			c.idle.Remove(e.idle)
			e.idle = nil
			c.idleCost -= e.cost
			toClose = append(toClose, e.dr)
		}
	}
	c.mu.Unlock()
	for _, dr := range toClose {
		dr.Close()
	}
}

// closeAll closes every idle reader (at unmount).
func (c *readerCache) closeAll() {
	c.forget(func(pointKey) bool { return true })
}

package guest

import (
	"container/list"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxCachedNames bounds the names the directory cache of one volume holds
// (about bytesPerCachedName each: some 20 MiB per volume at most).
const maxCachedNames = 200_000

// bytesPerCachedName is about what one cached name costs: the name, its
// entries in the name and index maps and its fuse.DirEntry.
const bytesPerCachedName = 100

// held is about what the cache holds, in bytes.
func (c *dirCache) held() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.names) * bytesPerCachedName
}

// dirCache keeps the name -> inode maps of recently listed directories of
// one volume, so that the lookups that follow a listing (READDIRPLUS, ls -l,
// find) never ask the reader again. Least recently used directories go first.
type dirCache struct {
	mu    sync.Mutex
	lru   *list.List // of *cachedDir, front = newest
	byIno map[uint64]*list.Element
	names int
	// ahead lists subdirectories in the background (prefetch.go); nil
	// for volumes whose reader serialises its calls.
	ahead *prefetcher
	// store pushes files' contents into the kernel's page cache ahead of
	// a reader (storeahead.go); nil where it is off.
	store *storer
	// mode guesses whether listings should carry every entry's
	// attributes (bareentries.go).
	mode *entryMode
}

type cachedDir struct {
	ino   uint64
	names map[string]uint64
	// order is the listing (guest inode numbers), index a name's place
	// in it; stored is how far store-ahead has claimed entries.
	order  []fuse.DirEntry
	index  map[string]int
	stored int
}

func newDirCache() *dirCache {
	return &dirCache{lru: list.New(), byIno: map[uint64]*list.Element{}, mode: &entryMode{}}
}

func (c *dirCache) put(ino uint64, entries []fuse.DirEntry) {
	if len(entries) > maxCachedNames/4 {
		return
	}
	names := make(map[string]uint64, len(entries))
	index := make(map[string]int, len(entries))
	for i, e := range entries {
		names[e.Name] = e.Ino
		index[e.Name] = i
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byIno[ino]; ok {
		c.names -= len(el.Value.(*cachedDir).names)
		c.lru.Remove(el)
	}
	c.byIno[ino] = c.lru.PushFront(&cachedDir{ino: ino, names: names, order: entries, index: index})
	c.names += len(names)
	for c.names > maxCachedNames {
		old := c.lru.Back()
		d := old.Value.(*cachedDir)
		c.lru.Remove(old)
		delete(c.byIno, d.ino)
		c.names -= len(d.names)
	}
}

// lookup answers from the cache; known is false when the directory is not cached.
func (c *dirCache) lookup(dir uint64, name string) (ino uint64, found, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byIno[dir]
	if !ok {
		return 0, false, false
	}
	c.lru.MoveToFront(el)
	ino, found = el.Value.(*cachedDir).names[name]
	return ino, found, true
}

// claimAfter returns up to n entries that follow name in the listing of
// dir and were not claimed before, and marks them claimed.
func (c *dirCache) claimAfter(dir uint64, name string, n int) []fuse.DirEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byIno[dir]
	if !ok {
		return nil
	}
	d := el.Value.(*cachedDir)
	i, ok := d.index[name]
	if !ok {
		return nil
	}
	from := max(i+1, d.stored)
	to := min(i+1+n, len(d.order))
	if from >= to {
		return nil
	}
	d.stored = to
	return d.order[from:to]
}

package guest

import (
	"github.com/cairnbackup/cairn/partinfo"

	"container/list"
	"log/slog"
	"sync"
)

// DefaultMaxOpen is how many guest filesystems a mount keeps open when
// New is given 0: each holds up to 16 MiB of cached chunks and a
// directory cache of up to 200,000 names (some 20 MiB).
const DefaultMaxOpen = 16

// DefaultMaxOpenBytes bounds what the open guest filesystems of a mount
// hold in their caches (chunks and directory names) together: the count
// bound alone allows DefaultMaxOpen times some 36 MiB.
const DefaultMaxOpenBytes = 256 << 20

// Guests is the guest filesystem state of one mount: its FSProvider and
// VolumeProvider share one bound on the filesystems kept open.
type Guests struct {
	log *slog.Logger
	set *openSet
}

// New returns the guest filesystems of one mount, keeping at most maxOpen
// filesystems open (0 or less means DefaultMaxOpen). The least recently
// used one beyond the bound is closed: its reader and caches are dropped
// and it is opened again, transparently, at its next use. Inode numbers
// do not change (they derive from the guest's own). A filesystem in use
// by a request is never closed under it; the bound is exceeded while more
// than maxOpen are in use at once.
func New(log *slog.Logger, maxOpen int) *Guests {
	if log == nil {
		log = slog.Default()
	}
	if maxOpen <= 0 {
		maxOpen = DefaultMaxOpen
	}
	return &Guests{log: log, set: &openSet{max: maxOpen, maxBytes: DefaultMaxOpenBytes}}
}

// SetMaxBytes bounds what the open filesystems hold in their caches
// together (0 or less means DefaultMaxOpenBytes): beyond it, the least
// recently used idle ones are closed as beyond the count bound.
func (g *Guests) SetMaxBytes(n int64) {
	if n <= 0 {
		n = DefaultMaxOpenBytes
	}
	g.set.mu.Lock()
	defer g.set.mu.Unlock()
	g.set.maxBytes = n
	g.set.evict()
}

// openSet keeps the opened filesystems of a mount's volumes by last use.
// Its mutex guards every volumeDir.st of the set.
type openSet struct {
	mu       sync.Mutex
	max      int
	maxBytes int64     // bound on what the open volumes' caches hold together; 0: none
	lru      list.List // of *volumeDir with st != nil, front = most recent
}

// volState is an opened volume: its filesystem and caches. users counts
// the requests using it; it is closed (dropped) only at zero.
type volState struct {
	fs     partinfo.Filesystem
	cache  *dirCache
	chunks *chunkCache // the reader's chunk cache; nil where the volume keeps its own (btrfs)
	users  int
	elem   *list.Element
}

// held is what the volume's caches hold, in bytes.
func (st *volState) held() int64 {
	n := st.cache.held()
	if st.chunks != nil {
		n += st.chunks.held()
	}
	return n
}

// open returns the number of opened volumes.
func (s *openSet) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// evict drops the least recently used idle volumes beyond the bounds:
// more than max open, or more than maxBytes held by their caches
// together (the most recently used one always stays). s.mu is held.
func (s *openSet) evict() {
	if s.lru.Len() <= 1 {
		return // the most recently used one always stays: nothing to sum (every request's release comes here)
	}
	var total int64
	if s.maxBytes > 0 {
		for e := s.lru.Front(); e != nil; e = e.Next() {
			total += e.Value.(*volumeDir).st.held()
		}
	}
	over := func() bool { return s.lru.Len() > s.max || s.maxBytes > 0 && total > s.maxBytes }
	for e := s.lru.Back(); e != nil && e != s.lru.Front() && over(); {
		prev := e.Prev()
		v := e.Value.(*volumeDir)
		if v.st.users == 0 {
			if s.maxBytes > 0 {
				total -= v.st.held()
			}
			s.lru.Remove(e)
			v.st = nil
		}
		e = prev
	}
}

// volIDs gives the volumes a VolumeProvider builds their inode number
// salt and the mount's open set.
type volIDs struct {
	set  *openSet
	salt func() uint64
}

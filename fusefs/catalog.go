package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// ErrPointGone is returned by reads of a recovery point that has been
// deleted from the repository while it was open.
var ErrPointGone = errors.New("recovery point was deleted")

// pointKey names one recovery point.
type pointKey struct {
	VM  string
	Gen uint32
}

// vmView is one VM of a catalog snapshot.
type vmView struct {
	name   string
	points []blockmap.Point // oldest first
	byID   map[string]int
	// mtime is the VM directory's mtime: its newest point's time when
	// the mount started, and the time the mount saw its points change
	// after that. The kernel lists the directory anew when it moves.
	mtime time.Time
}

func (v *vmView) point(id string) (blockmap.Point, bool) {
	i, ok := v.byID[id]
	if !ok {
		return blockmap.Point{}, false
	}
	return v.points[i], true
}

func (v *vmView) latest() (blockmap.Point, bool) {
	if len(v.points) == 0 {
		return blockmap.Point{}, false
	}
	// By time, not generation: a pulled point may be numbered after a
	// newer one (blockmap.Latest).
	return blockmap.Latest(v.points), true
}

// catalogSnap is an immutable view of the catalog at one sequence number.
type catalogSnap struct {
	seq    uint64
	events uint64   // change notifications counted before it was read
	names  []string // VM names, sorted
	vms    map[string]*vmView
	alive  map[pointKey]bool
	// rootMtime is the root directory's mtime: the mount's start, then
	// the time the mount saw the set of VMs change.
	rootMtime time.Time
}

// newSnap builds a snapshot from the catalog. prev is the snapshot it
// replaces (nil for the first); now is when it was read. Directory mtimes
// carry over from prev where the entries did not change and move forward
// (at least by a nanosecond) where they did.
func newSnap(seq uint64, sums []blockmap.VMSummary, prev *catalogSnap, now time.Time) *catalogSnap {
	s := &catalogSnap{seq: seq, vms: map[string]*vmView{}, alive: map[pointKey]bool{}, rootMtime: now}
	for _, vm := range sums {
		if len(vm.Points) == 0 {
			continue
		}
		v := &vmView{name: vm.Name, points: vm.Points, byID: make(map[string]int, len(vm.Points))}
		for i, p := range vm.Points {
			v.byID[p.ID] = i
			s.alive[pointKey{p.VM, p.Gen}] = true
		}
		switch {
		case prev == nil:
			v.mtime = blockmap.Latest(vm.Points).Time
		case prev.vms[vm.Name] != nil && samePoints(prev.vms[vm.Name].points, v.points):
			v.mtime = prev.vms[vm.Name].mtime
		case prev.vms[vm.Name] != nil:
			v.mtime = later(now, prev.vms[vm.Name].mtime)
		default:
			v.mtime = now
		}
		s.names = append(s.names, vm.Name)
		s.vms[vm.Name] = v
	}
	if prev != nil {
		s.rootMtime = prev.rootMtime
		if !slices.Equal(prev.names, s.names) {
			s.rootMtime = later(now, prev.rootMtime)
		}
	}
	return s
}

// samePoints reports whether two lists hold the same points.
func samePoints(a, b []blockmap.Point) bool {
	return slices.EqualFunc(a, b, func(x, y blockmap.Point) bool { return x.Gen == y.Gen && x.ID == y.ID })
}

// later returns now, or a nanosecond after prev if now is not after it:
// a changed directory must never show its previous mtime again.
func later(now, prev time.Time) time.Time {
	if now.After(prev) {
		return now
	}
	return prev.Add(time.Nanosecond)
}

// catalogCache keeps the newest catalog snapshot and reloads it when the
// repository's catalog sequence number changes.
type catalogCache struct {
	repo  Source
	log   *slog.Logger
	watch *seqWatch // nil: poll the sequence file instead
	poll  time.Duration
	ctx   context.Context // the mount's lifetime

	mu      sync.Mutex // serialises reloads
	drainMu sync.Mutex // serialises draining the watch
	snap    atomic.Pointer[catalogSnap]
	checked atomic.Int64 // unix nanoseconds of the last sequence check
	// events counts change notifications; a snapshot (and a deletion
	// list) is current when it was read after the last one counted.
	events   atomic.Uint64
	failed   atomic.Bool // the last reload failed
	onChange func(old, cur *catalogSnap)

	stateMu sync.Mutex // serialises reads of catalog.seq
	state   atomic.Pointer[seqState]
}

// seqState is catalog.seq as read after a number of change notifications.
type seqState struct {
	events uint64
	st     blockmap.CatalogState
	err    error
}

func newCatalogCache(ctx context.Context, repo Source, log *slog.Logger, poll time.Duration) *catalogCache {
	c := &catalogCache{repo: repo, log: log, poll: poll, ctx: ctx}
	if repo.Dir() == "" {
		return c // a source without a directory is polled
	}
	w, err := newSeqWatch(repo.Dir())
	if err != nil {
		log.Warn("no change notification for the repository catalog; polling it", "err", err)
	} else {
		c.watch = w
	}
	return c
}

// load reads the catalog for the first time.
func (c *catalogCache) load() error {
	_, err := c.reload(true)
	return err
}

// notified drains change notifications and reports whether the snapshot
// may be out of date.
func (c *catalogCache) notified() bool {
	e := c.drain()
	s := c.snap.Load()
	return s == nil || s.events < e || c.failed.Load()
}

// drain counts pending change notifications and returns the count.
// Draining and counting happen under one lock: otherwise a reader could
// find the queue empty while another goroutine holds the event it drained
// but has not yet counted it.
func (c *catalogCache) drain() uint64 {
	if c.watch != nil {
		c.drainMu.Lock()
		if c.watch.changed() {
			c.events.Add(1)
		}
		c.drainMu.Unlock()
	}
	return c.events.Load()
}

// current returns a snapshot that is at most the poll interval old, or
// fresh after a change notification. Directory operations use it.
func (c *catalogCache) current() *catalogSnap {
	due := c.notified() || time.Since(time.Unix(0, c.checked.Load())) > c.poll
	if !due {
		return c.snap.Load()
	}
	s, err := c.reload(false)
	if err != nil {
		c.log.Error("read repository catalog; showing the previous one", "err", err)
	}
	return s
}

// alive reports whether the point is still in the catalog. Reads call it
// after reading, so bytes that pruning may have released are never
// returned: blockmap lists a deletion in catalog.seq before it releases
// anything. It reads only catalog.seq (when a change was notified, or
// always without a watch), never the index, so a read never waits for a
// writer.
func (c *catalogCache) alive(k pointKey) bool {
	e := c.drain()
	snap := c.snap.Load()
	if !snap.alive[k] {
		return false
	}
	st := c.state.Load()
	if c.watch == nil || st == nil || st.events < e {
		st = c.readState(e)
	}
	if st.err != nil {
		c.log.Error("read catalog.seq to check a point; refusing its reads", "vm", k.VM, "generation", k.Gen, "err", st.err)
		return false
	}
	gone, known := st.st.Gone(blockmap.PointRef{VM: k.VM, Gen: k.Gen}, snap.seq)
	if known {
		return !gone
	}
	// Deletions since the snapshot are no longer all listed: read the catalog.
	s, err := c.reload(false)
	if err != nil {
		c.log.Error("read repository catalog to check a point", "vm", k.VM, "generation", k.Gen, "err", err)
		return false
	}
	return s.alive[k]
}

// readState reads catalog.seq after e change notifications (unless a
// read after as many is already there).
func (c *catalogCache) readState(e uint64) *seqState {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if st := c.state.Load(); c.watch != nil && st != nil && st.events >= e {
		return st
	}
	cs, err := c.repo.CatalogState()
	st := &seqState{events: e, st: cs, err: err}
	c.state.Store(st)
	return st
}

// reload re-reads the catalog when its sequence number changed (or always
// when force is set). It returns the newest snapshot it has.
func (c *catalogCache) reload(force bool) (*catalogSnap, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	events := c.drain()
	seq := c.repo.CatalogSeq()
	old := c.snap.Load()
	if !force && old != nil && seq == old.seq && !c.failed.Load() {
		if old.events < events {
			cp := *old
			cp.events = events
			old = &cp
			c.snap.Store(old)
		}
		c.checked.Store(time.Now().UnixNano())
		return old, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	sums, err := c.repo.Catalog(ctx)
	if err != nil {
		c.failed.Store(true)
		return old, fmt.Errorf("catalog of %s: %w", c.repo.Dir(), err)
	}
	c.failed.Store(false)
	cur := newSnap(seq, sums, old, time.Now())
	cur.events = events
	c.snap.Store(cur)
	c.checked.Store(time.Now().UnixNano())
	if old != nil && c.onChange != nil {
		c.onChange(old, cur)
	}
	return cur, nil
}

func (c *catalogCache) close() {
	if c.watch != nil {
		c.watch.close()
	}
}

package blockmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"golang.org/x/sys/unix"
)

// indexLocker serialises access to the Badger index across processes and
// goroutines: readers share the lock, a writer that commits excludes all.
// Every acquisition opens the lock file anew, so flock's per-open-file
// semantics make goroutines of one process exclude each other too.
type indexLocker struct {
	path string
}

func newIndexLocker(path string) *indexLocker { return &indexLocker{path: path} }

// lock acquires the lock (shared or exclusive), polling until ctx ends.
func (l *indexLocker) lock(ctx context.Context, exclusive bool) (release func(), err error) {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("open index lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, fmt.Errorf("lock index: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for the repository index: %w", ctx.Err())
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

func (r *Repo) badgerOptions(readOnly bool) badger.Options {
	opts := badger.DefaultOptions(filepath.Join(r.dir, "index")).
		WithReadOnly(readOnly).
		WithLogger(badgerLogger{r.log}).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithNumCompactors(2).
		WithNumLevelZeroTables(8).
		WithNumLevelZeroTablesStall(16).
		WithValueLogFileSize(8 << 20).
		WithValueThreshold(1 << 10).
		WithMetricsEnabled(false).
		// Damage is found, never served: every block read from a table
		// and every value read from the value log is checked against its
		// checksum (whole tables are checked before opening: checkTables).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true)
	if readOnly {
		opts = opts.WithNumCompactors(0)
	}
	if r.tuneIndex != nil {
		opts = r.tuneIndex(opts)
	}
	return opts
}

// roIdle is how long a read-only index handle stays open after its last
// use, so that bursts of reads (a FUSE listing, a test) share one open.
const roIdle = 300 * time.Millisecond

// roCache keeps one read-only index handle (and the shared lock) open
// while reads keep coming. update closes it before it takes the exclusive
// lock, so this process never blocks itself.
type roCache struct {
	gate    sync.RWMutex // readers hold R while using db; update holds W
	mu      sync.Mutex
	db      *badger.DB
	release func()
	lastUse time.Time
	timer   *time.Timer
}

// errNeedsRecovery says that a writer was killed with its write-ahead log
// open: only a read-write open can replay and truncate it.
var errNeedsRecovery = errors.New("index needs recovery by a read-write open")

// view runs fn with the index opened read-only under the shared lock. When
// a killed writer left a write-ahead log that read-only Badger cannot
// replay, the index is opened read-write once (under the exclusive lock)
// to recover it, and the read is tried again.
func (r *Repo) view(ctx context.Context, fn func(db *badger.DB) error) error {
	err := r.viewOnce(ctx, fn)
	if errors.Is(err, errNeedsRecovery) {
		r.log.Info("recovering the index after an interrupted writer")
		if uerr := r.update(ctx, func(*badger.DB) error { return nil }); uerr != nil {
			return fmt.Errorf("recover the index after an interrupted writer: %w", uerr)
		}
		err = r.viewOnce(ctx, fn)
	}
	return err
}

func (r *Repo) viewOnce(ctx context.Context, fn func(db *badger.DB) error) error {
	c := &r.ro
	c.gate.RLock()
	defer c.gate.RUnlock()
	c.mu.Lock()
	if c.db == nil {
		release, err := r.locker.lock(ctx, false)
		if err != nil {
			c.mu.Unlock()
			return err
		}
		db, err := r.openIndex(ctx, r.badgerOptions(true))
		if err != nil {
			release()
			c.mu.Unlock()
			if isTruncateNeeded(err) || r.hasEmptyLogFile() {
				return fmt.Errorf("open index %s: %w: %v", filepath.Join(r.dir, "index"), errNeedsRecovery, err)
			}
			return fmt.Errorf("open index %s: %w", filepath.Join(r.dir, "index"), err)
		}
		c.db, c.release = db, release
		if c.timer == nil {
			c.timer = time.AfterFunc(roIdle, func() { r.closeIdleRO(false) })
		} else {
			c.timer.Reset(roIdle)
		}
	}
	db := c.db
	c.lastUse = time.Now()
	c.mu.Unlock()
	return r.run(db, fn)
}

// run calls fn with the open index. A panic inside Badger (damage it did
// not check) becomes an ErrIndexDamaged error, and so does a checksum
// failure it reports.
func (r *Repo) run(db *badger.DB, fn func(db *badger.DB) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = r.recovered(p, "read")
		}
	}()
	return r.damageError(fn(db))
}

// openIndex checks the index's tables, then opens it; a panic while
// opening becomes an ErrIndexDamaged error.
func (r *Repo) openIndex(ctx context.Context, opts badger.Options) (db *badger.DB, err error) {
	defer func() {
		if err != nil && !errors.Is(err, ErrIndexDamaged) && errors.Is(err, os.ErrPermission) {
			err = fmt.Errorf("%w%s", err, r.permissionAdvice())
		}
	}()
	if err := r.checkTables(opts); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, r.recovered(p, "open")
		}
	}()
	db, err = openBadger(ctx, opts)
	return db, r.damageError(err)
}

// closeIdleRO closes the cached read-only handle if it has been idle (or
// at once with force). The caller must not hold c.gate.
func (r *Repo) closeIdleRO(force bool) {
	c := &r.ro
	if !force {
		c.gate.Lock()
		defer c.gate.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil {
		return
	}
	if idle := time.Since(c.lastUse); !force && idle < roIdle {
		c.timer.Reset(roIdle - idle)
		return
	}
	c.db.Close()
	c.release()
	c.db, c.release = nil, nil
}

// Close releases any index handle the repository keeps open.
func (r *Repo) Close() error {
	r.ro.gate.Lock()
	defer r.ro.gate.Unlock()
	r.closeIdleRO(true)
	return nil
}

// update runs fn with the index opened read-write under the exclusive lock.
func (r *Repo) update(ctx context.Context, fn func(db *badger.DB) error) (err error) {
	defer func() {
		if p := recover(); p != nil { // in Close or a compaction of a damaged index
			err = r.recovered(p, "update")
		}
	}()
	r.ro.gate.Lock()
	defer r.ro.gate.Unlock()
	r.closeIdleRO(true)
	defer r.updates.Add(1) // a cached catalog is stale after any update
	start := time.Now()
	release, err := r.locker.lock(ctx, true)
	if err != nil {
		return err
	}
	defer release()
	locked := time.Now()
	r.dropEmptyLogFiles() // under the exclusive lock: no writer has them open
	if err := r.checkIndexRoom(); err != nil {
		return err
	}
	db, err := r.openForWrite(ctx) // compactroom.go
	if err != nil {
		return fmt.Errorf("open index %s: %w", filepath.Join(r.dir, "index"), err)
	}
	opened := time.Now()
	defer func() {
		work := time.Now()
		if err == nil {
			r.settleLevels(ctx, db) // what an earlier writer's budget left
		}
		l0 := levelZeroTables(db) + 1 // Close flushes the memtable into one more
		merge := mergeRoom(db)        // compactroom.go
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close index: %w", cerr)
		}
		closed := time.Now()
		if err == nil && l0 >= compactL0At {
			r.compactL0(ctx, merge)
		}
		r.fixRepoModes()
		r.log.Debug("index update", "wait", locked.Sub(start), "open", opened.Sub(locked), "work", work.Sub(opened),
			"close", closed.Sub(work), "compact", time.Since(closed), "l0_tables", l0)
	}()
	return r.run(db, fn)
}

// compactL0At is how many level-0 tables the index may collect before a
// writer compacts them. Every update flushes its memtable into a new
// level-0 table, and cairn's processes live too briefly for Badger's
// background compactors (they start after a random delay of up to a
// second) ever to run: without this, every open and every lookup would
// visit one more table for each update ever made.
const compactL0At = 8

// levelZeroTables counts the index's level-0 tables.
func levelZeroTables(db *badger.DB) int {
	n := 0
	for _, t := range db.Tables() {
		if t.Level == 0 {
			n++
		}
	}
	return n
}

// compactL0 merges the index's level-0 tables into the level below, as
// Badger's own compaction on close does. When that leaves a lower level
// over its target size (the base level fills up as the index grows), it
// keeps the index open while Badger's background compactors push the
// excess down, as they would in a long-lived process (settleLevels); that
// is rare, since each level is ten times the one above.
// The caller holds the exclusive lock. A failure only costs speed, so it
// is logged, not returned: the update that came before it is durable.
func (r *Repo) compactL0(ctx context.Context, need int64) {
	fail := func(err error) {
		r.log.Warn("compacting the index failed; lookups stay slower until the next update", "err", err)
	}
	if err := r.roomForMerge(need); err != nil {
		r.log.Warn("compacting the index postponed until its filesystem has room; lookups stay slower until then", "err", err)
		return
	}
	db, err := openBadger(ctx, r.badgerOptions(false).WithCompactL0OnClose(true))
	if err != nil {
		fail(err)
		return
	}
	if err := db.Close(); err != nil {
		fail(err)
		return
	}
	// The levels' sizes are known only to an open index.
	if db, err = openBadger(ctx, r.badgerOptions(false)); err != nil {
		fail(err)
		return
	}
	r.settleLevels(ctx, db)
	if err := db.Close(); err != nil {
		fail(err)
	}
}

// settleLevels gives Badger's compactors, which run in every read-write
// open, up to deepCompactFor to bring the levels below 0 under their
// targets. The exclusive lock is held meanwhile (mounts and other
// writers wait), so the budget is short: work left over is continued by
// the next writer. Close lets a running compaction finish.
func (r *Repo) settleLevels(ctx context.Context, db *badger.DB) {
	if !levelsOverTarget(db) || db.Opts().NumCompactors == 0 {
		return
	}
	if err := r.roomForMerge(settleRoom(db)); err != nil {
		r.log.Warn("compacting the index's lower levels postponed until its filesystem has room", "err", err)
		return
	}
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for levelsOverTarget(db) && time.Since(start) < deepCompactFor && ctx.Err() == nil {
		<-tick.C
	}
	r.log.Debug("index levels compacted", "took", time.Since(start), "done", !levelsOverTarget(db))
}

// deepCompactFor bounds how long one writer waits for Badger's compactors.
// They start after a random delay of up to a second, and each compaction
// they begin (a table and its overlap in the next level) finishes before
// the index closes.
const deepCompactFor = 5 * time.Second

// levelsOverTarget reports whether a level below 0 holds more than its
// target size, so that Badger's compactors have work to do there.
func levelsOverTarget(db *badger.DB) bool {
	for _, l := range db.Levels() {
		if l.Level > 0 && l.Score >= 1 {
			return true
		}
	}
	return false
}

// badgerLogger forwards Badger's warnings and errors to slog and drops its
// chatter.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error("index: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn("index: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Infof(string, ...any)        {}
func (l badgerLogger) Debugf(string, ...any)       {}

// openBadger opens the index, retrying for a while when Badger's own
// directory lock is taken. Our index.lock already excludes other cairn
// users, so a conflict there is transient: a child process forked by this
// one (a transport's NBD server) holds a copy of the lock's file until it
// execs.
func openBadger(ctx context.Context, opts badger.Options) (*badger.DB, error) {
	delay := 2 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		db, err := badger.Open(opts)
		if err == nil || !isDirLocked(err) || time.Now().After(deadline) {
			return db, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

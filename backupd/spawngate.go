package backupd

import (
	"context"
	"sync"

	"github.com/cairnbackup/cairn/blockmap"
)

// spawnGate keeps process starts (fork+exec of NBD servers) apart from
// repository index operations of the same process. A forked child holds
// copies of the parent's file descriptors until it execs, among them the
// flock'd Badger directory lock; if another goroutine closes and reopens
// the index in that window, Badger fails with "Cannot acquire directory
// lock". Starts take the gate exclusively (cmd.Start returns after the
// exec), index operations share it. (The lasting fix belongs in blockmap:
// a lock that ignores same-process duplicates, or a retry.)
type spawnGate struct{ mu sync.RWMutex }

func (g *spawnGate) spawn(start func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return start()
}

func (g *spawnGate) index(op func() error) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return op()
}

// Repository calls of a job, through the gate.

func (j *vmJob) beginPoint(ctx context.Context, opts blockmap.PointOptions) (s *blockmap.Session, err error) {
	err = j.gate.index(func() error { s, err = j.repo.BeginPoint(ctx, j.vm.Name, opts); return err })
	return s, err
}

func (j *vmJob) addDisk(ctx context.Context, s *blockmap.Session, name string, size int64, opts blockmap.DiskOptions) (w *blockmap.DiskWriter, err error) {
	err = j.gate.index(func() error { w, err = s.AddDisk(ctx, name, size, opts); return err })
	return w, err
}

func (j *vmJob) commit(ctx context.Context, s *blockmap.Session) (p blockmap.Point, err error) {
	err = j.gate.index(func() error { p, err = s.Commit(ctx); return err })
	return p, err
}

func (j *vmJob) abort(ctx context.Context, s *blockmap.Session) error {
	return j.gate.index(func() error { return s.Abort(ctx) })
}

func (j *vmJob) resolvePoint(ctx context.Context, ref string) (p blockmap.Point, err error) {
	err = j.gate.index(func() error { p, err = j.repo.ResolvePoint(ctx, j.vm.Name, ref); return err })
	return p, err
}

func (j *vmJob) openDisk(ctx context.Context, p blockmap.Point, name string) (dr *blockmap.DiskReader, err error) {
	err = j.gate.index(func() error { dr, err = j.repo.OpenDisk(ctx, p, name); return err })
	return dr, err
}

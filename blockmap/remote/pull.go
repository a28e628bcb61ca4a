package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/cairnbackup/cairn/blockmap"
)

// Pull copies one remote point into a local repository as a new point of
// the same VM with the same time, consistency, metadata, disk contents
// (byte for byte), suspicious-change verdict and content figures (as the
// manifest keeps them). It fails with blockmap.ErrInvalid when the repository's
// block size differs from the remote point's, and does nothing when the
// VM already has a point with that id. Nothing is committed unless every
// block was fetched and authenticated.
func (r *Remote) Pull(ctx context.Context, repo *blockmap.Repo, vm, pointID string) (blockmap.Point, bool, error) {
	p, did, _, err := r.PullWith(ctx, repo, vm, pointID, PullOptions{})
	return p, did, err
}

// PullOptions tune PullWith.
type PullOptions struct {
	// Progress, when set, is called as each disk of the point begins with
	// the plaintext bytes of its data blocks; add is told of every block
	// written, done when the disk ends (the signature of backupd.Progress,
	// so a CLI's progress bars serve both).
	Progress func(vm, disk string, total int64) (add func(int64), done func())
	// CacheDir is the remote's cache directory (<repo>/remotes/NAME.cache,
	// as ReplicateOptions.CacheDir). A pull records there the points it
	// wrote; with those records (and replicate's) a later pull of the
	// VM downloads only the blocks that differ from the VM's newest local
	// point. Empty: every block is downloaded.
	CacheDir string
}

// PullStats is what one PullWith moved.
type PullStats struct {
	// BytesDownloaded counts the bodies of every GET the pull made
	// (manifest, block map, ranges of packs).
	BytesDownloaded int64 `json:"bytes_downloaded"`
	// BytesData are the plaintext bytes of the point's data blocks.
	BytesData int64 `json:"bytes_data"`
	// BytesFetched are the plaintext bytes of the blocks downloaded;
	// BytesLocal those taken from the repository instead (blocks the
	// newest local point already holds, in place or elsewhere).
	BytesFetched int64 `json:"bytes_fetched"`
	BytesLocal   int64 `json:"bytes_local"`
}

// PullWith is Pull with options, also saying what it moved (zero when the
// point was already there).
func (r *Remote) PullWith(ctx context.Context, repo *blockmap.Repo, vm, pointID string, o PullOptions) (blockmap.Point, bool, PullStats, error) {
	var st PullStats
	var got atomic.Int64
	ctx = withDownloadCounter(ctx, &got)
	p, did, err := r.pull(ctx, repo, vm, pointID, o, &st)
	st.BytesDownloaded = got.Load()
	return p, did, st, err
}

func (r *Remote) pull(ctx context.Context, repo *blockmap.Repo, vm, pointID string, o PullOptions, st *PullStats) (blockmap.Point, bool, error) {
	m, err := r.manifest(ctx, vm, pointID)
	if err != nil {
		return blockmap.Point{}, false, err
	}
	if local, err := repo.Points(ctx, vm); err == nil {
		for _, p := range local {
			if p.ID == pointID {
				return p, false, nil
			}
		}
	}
	if m.BlockSize != repo.BlockSize() {
		return blockmap.Point{}, false, fmt.Errorf("pull %s point %s: %w", vm, pointID, &BlockSizeError{Remote: m.BlockSize, Local: repo.BlockSize()})
	}
	// The point keeps its id (two points of one second are T and T-2:
	// pulled alone, T-2 must not become T); another pull that committed
	// it since the check above is found under the VM's lock.
	popts := blockmap.PointOptions{ID: pointID, Time: m.Point.Time, Consistency: m.Point.Consistency, Meta: m.Point.Meta, Purpose: "cairn pull"}
	if v := m.Point.Verdict; len(v) > 0 {
		// The verdict was decided once, when the point was first
		// committed (against that repository's history): it is kept,
		// not judged again.
		popts.Judge = func(blockmap.Point, []blockmap.Point) json.RawMessage { return v }
	}
	s, err := repo.BeginPoint(ctx, vm, popts)
	if errors.Is(err, blockmap.ErrPointExists) {
		p, rerr := repo.ResolvePoint(ctx, vm, pointID)
		return p, false, rerr
	}
	if err != nil {
		return blockmap.Point{}, false, err
	}
	p, err := r.pullInto(ctx, repo, s, m, o, st)
	if err != nil {
		if aerr := s.Abort(ctx); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return blockmap.Point{}, false, fmt.Errorf("pull %s point %s: %w", vm, pointID, err)
	}
	return p, true, nil
}

func (r *Remote) pullInto(ctx context.Context, repo *blockmap.Repo, s *blockmap.Session, m *manifest, o PullOptions, st *PullStats) (blockmap.Point, error) {
	maps, err := r.openMaps(ctx, m)
	if err != nil {
		return blockmap.Point{}, err
	}
	base := r.findPullBase(ctx, repo, o.CacheDir, s, m, maps)
	for _, d := range m.Point.Disks {
		var md *manifestDisk
		for i := range m.Disks {
			if m.Disks[i].Name == d.Name {
				md = &m.Disks[i]
			}
		}
		if md == nil {
			return blockmap.Point{}, fmt.Errorf("%w: manifest lacks the block map of disk %s", ErrFormat, d.Name)
		}
		es, err := maps.entries(md)
		if err != nil {
			return blockmap.Point{}, err
		}
		bes := base.entries(d.Name)
		// With the session's base as twin the writer keeps the base's
		// blocks (unless the disk is new or resized: then it asks for
		// every block, and equal blocks are copied from the twin).
		dopts := blockmap.DiskOptions{Full: bes == nil || !base.incremental, FullReason: "pulled from a remote", Meta: d.Meta}
		if len(d.Content) > 0 {
			dopts.Content = keptFigures(d.Content) // what was measured as the point was first stored
		}
		w, err := s.AddDisk(ctx, d.Name, md.Size, dopts)
		if err != nil {
			return blockmap.Point{}, err
		}
		full, _ := w.Full()
		pl := planDisk(es, bes, !full)
		bs := int64(m.BlockSize)
		add, done := func(int64) {}, func() {}
		if o.Progress != nil {
			var total int64
			for _, e := range es {
				total += int64(e.Raw)
			}
			add, done = o.Progress(m.Point.VM, d.Name, total)
		}
		for _, e := range es {
			st.BytesData += int64(e.Raw)
		}
		st.BytesLocal += pl.kept
		add(pl.kept)
		again, err := r.pullLocal(ctx, base, d.Name, w, pl, bs, add, st)
		if err == nil {
			err = r.fetchBlobs(ctx, m.Packs, append(pl.fetch, again...), func(e blockEntry, data []byte, err error) error {
				if err != nil {
					return &BlockError{VM: m.Point.VM, Point: m.Point.ID, Disk: d.Name, Offset: e.Block * bs, Pack: m.Packs[e.Pack].ID, Err: err}
				}
				if _, err := w.WriteAt(data, e.Block*bs); err != nil {
					return err
				}
				w.AddBytesRead(int64(len(data)))
				st.BytesFetched += int64(len(data))
				add(int64(len(data)))
				return nil
			})
		}
		done()
		if err != nil {
			return blockmap.Point{}, err
		}
		r.log.Debug("pulled disk", "vm", m.Point.VM, "point", m.Point.ID, "disk", d.Name, "blocks", len(es),
			"fetched", len(pl.fetch), "copied", len(pl.copies), "kept", pl.keptN, "zeroed", len(pl.zero))
	}
	if err := attachInto(s, m); err != nil {
		return blockmap.Point{}, err
	}
	p, err := s.Commit(ctx)
	if err == nil && o.CacheDir != "" {
		rec, serr := r.savePullRecord(o.CacheDir, p, m)
		if serr != nil {
			// The point is committed; only the next pull's saving is lost.
			r.log.Warn("pull: could not record the pulled point; the next pull of the VM downloads every block", "vm", p.VM, "point", p.ID, "error", serr)
		} else if serr := r.savePulledState(ctx, repo, o.CacheDir, p, rec); serr != nil {
			// Written again by the next replicate (adoptPulled).
			r.log.Warn("pull: could not record the pulled point as copied", "vm", p.VM, "point", p.ID, "error", serr)
		}
	}
	return p, err
}

// pullLocal writes the blocks of pl that come from the repository: the
// zeros and the copies read from the base's local disk. A copy is checked
// against its id first; one that does not match or cannot be read (the
// local disk damaged) is never written but returned, to be downloaded.
func (r *Remote) pullLocal(ctx context.Context, base *pullBase, disk string, w *blockmap.DiskWriter, pl pullPlan, bs int64, add func(int64), st *PullStats) ([]blockEntry, error) {
	for _, b := range pl.zero {
		if err := w.WriteBlock(b, make([]byte, w.BlockLen(b))); err != nil {
			return nil, err
		}
	}
	if len(pl.copies) == 0 {
		return nil, nil
	}
	dr, err := base.repo.OpenDisk(ctx, base.p, disk)
	if err != nil {
		r.log.Warn("pull: cannot read the local point's disk; downloading its blocks", "vm", base.p.VM, "point", base.p.ID, "disk", disk, "error", err)
		return pl.copyE, nil
	}
	defer dr.Close()
	var again []blockEntry
	buf := make([]byte, bs)
	for i, c := range pl.copies {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := pl.copyE[i]
		p := buf[:e.Raw]
		if _, err := dr.ReadAt(p, c[1]*bs); err != nil && !errors.Is(err, io.EOF) {
			r.log.Warn("pull: cannot read a block of the local point; downloading it", "vm", base.p.VM, "point", base.p.ID, "disk", disk, "offset", c[1]*bs, "error", err)
			again = append(again, e)
			continue
		}
		if r.keys.blockID(p) != e.ID {
			r.log.Warn("pull: a block of the local point is not the block its remote copy names (run cairn verify); downloading it", "vm", base.p.VM, "point", base.p.ID, "disk", disk, "offset", c[1]*bs)
			again = append(again, e)
			continue
		}
		if _, err := w.WriteAt(p, c[0]*bs); err != nil {
			return nil, err
		}
		st.BytesLocal += int64(len(p))
		add(int64(len(p)))
	}
	return again, nil
}

// keptFigures is the content meter of a pulled disk: it measures nothing
// (the blocks a pull writes are not the blocks the point stored when it
// was made) and gives the figures the manifest kept (DiskInfo.Content).
type keptFigures json.RawMessage

func (keptFigures) Observe([]byte)             {}
func (k keptFigures) Figures() json.RawMessage { return json.RawMessage(k) }

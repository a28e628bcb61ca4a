package remote

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cairnbackup/cairn/blockmap"
)

// Pull copies one remote point into a local repository as a new point of
// the same VM with the same time, consistency, metadata and disk contents
// (byte for byte). It fails with blockmap.ErrInvalid when the repository's
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
}

// PullStats is what one PullWith moved.
type PullStats struct {
	// BytesDownloaded counts the bodies of every GET the pull made
	// (manifest, block map, ranges of packs).
	BytesDownloaded int64 `json:"bytes_downloaded"`
	// BytesData are the plaintext bytes of the data blocks written.
	BytesData int64 `json:"bytes_data"`
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
	s, err := repo.BeginPoint(ctx, vm, blockmap.PointOptions{ID: pointID, Time: m.Point.Time, Consistency: m.Point.Consistency, Meta: m.Point.Meta, Purpose: "cairn pull"})
	if errors.Is(err, blockmap.ErrPointExists) {
		p, rerr := repo.ResolvePoint(ctx, vm, pointID)
		return p, false, rerr
	}
	if err != nil {
		return blockmap.Point{}, false, err
	}
	p, err := r.pullInto(ctx, s, m, o, st)
	if err != nil {
		if aerr := s.Abort(ctx); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return blockmap.Point{}, false, fmt.Errorf("pull %s point %s: %w", vm, pointID, err)
	}
	return p, true, nil
}

func (r *Remote) pullInto(ctx context.Context, s *blockmap.Session, m *manifest, o PullOptions, st *PullStats) (blockmap.Point, error) {
	maps, err := r.openMaps(ctx, m)
	if err != nil {
		return blockmap.Point{}, err
	}
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
		w, err := s.AddDisk(ctx, d.Name, md.Size, blockmap.DiskOptions{Full: true, FullReason: "pulled from a remote", Meta: d.Meta})
		if err != nil {
			return blockmap.Point{}, err
		}
		bs := int64(m.BlockSize)
		add, done := func(int64) {}, func() {}
		if o.Progress != nil {
			var total int64
			for _, e := range es {
				total += int64(e.Raw)
			}
			add, done = o.Progress(m.Point.VM, d.Name, total)
		}
		err = r.fetchBlobs(ctx, m.Packs, es, func(e blockEntry, data []byte, err error) error {
			if err != nil {
				return &BlockError{VM: m.Point.VM, Point: m.Point.ID, Disk: d.Name, Offset: e.Block * bs, Pack: m.Packs[e.Pack].ID, Err: err}
			}
			if _, err := w.WriteAt(data, e.Block*bs); err != nil {
				return err
			}
			w.AddBytesRead(int64(len(data)))
			st.BytesData += int64(len(data))
			add(int64(len(data)))
			return nil
		})
		done()
		if err != nil {
			return blockmap.Point{}, err
		}
	}
	if err := attachInto(s, m); err != nil {
		return blockmap.Point{}, err
	}
	return s.Commit(ctx)
}

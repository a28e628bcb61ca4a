package backupd

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/blockmap"
)

// Plan says how one disk of a new point is read.
type Plan struct {
	// Full means every block is read and blocks not read are zero;
	// otherwise blocks outside Areas keep their previous content.
	Full bool
	// Reason says why the disk is read in full (kept in the point).
	Reason string
	// Since names what Areas are relative to: a CBT changeId, "*" (every
	// area CBT knows as allocated), "dirty bitmap NAME", "changed areas
	// given".
	Since string
	// Areas are what to read, when AreasKnown; otherwise the source's
	// allocated areas are read.
	Areas      []blockmap.Extent
	AreasKnown bool
}

// Unchanged reports whether the plan reads nothing: no source needs
// opening.
func (p Plan) Unchanged() bool { return p.AreasKnown && len(p.Areas) == 0 }

// addDisk starts disk name of sess according to plan. When the
// repository reads the disk whole although the plan is incremental (the
// disk has no earlier version to build on), the plan is replaced by
// full's, given the repository's reason.
func addDisk(ctx context.Context, sess *blockmap.Session, name string, size int64, plan Plan, meta json.RawMessage,
	full func(ctx context.Context, reason string) (Plan, error)) (*blockmap.DiskWriter, Plan, error) {
	// The meter counts what the stored blocks look like (backupd/anomaly).
	opts := blockmap.DiskOptions{Full: plan.Full, FullReason: plan.Reason, Meta: meta, Content: anomaly.NewMeter()}
	if !plan.Full && plan.AreasKnown {
		// Only the changed areas' previous versions need loading.
		opts.Changed = plan.Areas
	}
	w, err := sess.AddDisk(ctx, name, size, opts)
	if err != nil {
		return nil, plan, err
	}
	if isFull, reason := w.Full(); isFull && !plan.Full {
		if plan, err = full(ctx, reason); err != nil {
			return nil, plan, err
		}
	}
	return w, plan, nil
}

// Progress, when set, is called once per disk before it is read; add
// counts bytes read and finish is called when the disk is done.
type Progress func(vm, disk string, total int64) (add func(int64), finish func())

// copyStep is the Copy of one disk: from a source into a writer.
type copyStep struct {
	VM, Disk string
	Plan     Plan
	// Options override the source's preferred copy options where set.
	Options  copier.Options
	Progress Progress
	// Started, when set, is told the bytes to read before the copy starts.
	Started func(total int64)
}

// copyDisk reads the plan's areas (or, when the plan does not know them,
// every area the source has allocated) from src into w, block aligned. It
// returns the bytes read and the bytes asked for.
func copyDisk(ctx context.Context, src source.Source, w *blockmap.DiskWriter, c copyStep) (read, total int64, err error) {
	extents := c.Plan.Areas
	if !c.Plan.AreasKnown {
		if extents, err = src.Allocated(ctx); err != nil {
			return 0, 0, fmt.Errorf("allocation map: %w", err)
		}
	}
	extents = copier.Align(extents, w.BlockSize(), w.Size())
	total = copier.Total(extents)
	if c.Started != nil {
		c.Started(total)
	}
	opts := mergeCopyOptions(src.CopyOptions(), c.Options)
	finish := func() {}
	if c.Progress != nil {
		opts.Progress, finish = c.Progress(c.VM, c.Disk, total)
	}
	read, err = copier.Copy(ctx, src, w, extents, opts)
	finish()
	return read, total, err
}

// mergeCopyOptions takes the fields set in over, the rest from pref.
func mergeCopyOptions(pref, over copier.Options) copier.Options {
	if over.Workers > 0 {
		pref.Workers = over.Workers
	}
	if over.ChunkSize > 0 {
		pref.ChunkSize = over.ChunkSize
	}
	if over.Progress != nil {
		pref.Progress = over.Progress
	}
	return pref
}

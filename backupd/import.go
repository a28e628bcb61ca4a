package backupd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/blockmap"
)

// ImportDisk is one disk of an import.
type ImportDisk struct {
	Name string
	// Source is a raw image, a block device, an NBD URI or the unix socket
	// of an NBD server (source.Open).
	Source string
	// Changed, when HasChanged, are the only areas read (as CBT reports
	// them).
	Changed    []blockmap.Extent
	HasChanged bool
	// DirtyBitmap, for an NBD source, names the qemu dirty bitmap whose
	// areas are read.
	DirtyBitmap string
}

// ImportOptions configure Import.
type ImportOptions struct {
	// Full reads every disk whole even if it was backed up before.
	Full bool
	// Point is the new point's options (time, consistency, attachments).
	Point blockmap.PointOptions
	// Source opens the sources (TLS, stall timeout; the dirty bitmap is
	// the disk's).
	Source   source.Options
	Progress Progress
	// Anomaly are the thresholds of the suspicious-change verdict kept
	// with the point (zero: the defaults; backupd/anomaly).
	Anomaly anomaly.Thresholds
}

// Import reads the disks of vm from their sources into one new point: the
// changed areas given, the areas a dirty bitmap marks, or (a full read:
// --full, no list, a disk with no earlier version) every allocated area,
// compared by hash with the previous point. Every source is opened before
// the point begins.
//
// The import is recorded in the repository's job log (kind import).
func Import(ctx context.Context, repo *blockmap.Repo, vm string, disks []ImportDisk, opts ImportOptions) (p blockmap.Point, err error) {
	end := StartJob(repo.Dir(), JobRecord{Kind: JobImport, VM: vm})
	defer func() {
		end(Cancelled(ctx, err), func(r *JobRecord) {
			if err != nil {
				return
			}
			r.Point, r.Consistency = p.ID, p.Consistency
			for _, d := range p.Disks {
				r.BytesRead += d.ReadBytes
				r.BytesWritten += d.StoredBytes
			}
		})
	}()
	return importPoint(ctx, repo, vm, disks, opts)
}

func importPoint(ctx context.Context, repo *blockmap.Repo, vm string, disks []ImportDisk, opts ImportOptions) (p blockmap.Point, err error) {
	srcs := make([]source.Source, len(disks))
	for i, d := range disks {
		o := opts.Source
		o.DirtyBitmap = d.DirtyBitmap
		src, err := source.Open(ctx, d.Source, o)
		if err != nil {
			return p, fmt.Errorf("import disk %s: %w", d.Name, err)
		}
		defer src.Close()
		srcs[i] = src
	}
	begin := time.Now()
	if opts.Point.Judge == nil {
		opts.Point.Judge = judgeFor(repo, opts.Anomaly, slog.Default())
	}
	sess, err := repo.BeginPoint(ctx, vm, opts.Point)
	if err != nil {
		return p, fmt.Errorf("import: %w", err)
	}
	slog.Debug("point begun", "vm", vm, "generation", sess.Gen(), "took", time.Since(begin))
	defer func() {
		if err != nil {
			if aerr := sess.Abort(ctx); aerr != nil {
				err = fmt.Errorf("%w (and cleaning up failed: %v; the next import cleans up)", err, aerr)
			}
		}
	}()
	for i, d := range disks {
		if err := importDisk(ctx, sess, vm, d, srcs[i], opts); err != nil {
			return p, err
		}
	}
	start := time.Now()
	p, err = sess.Commit(ctx)
	if err != nil {
		return p, fmt.Errorf("import: %w", err)
	}
	slog.Debug("point committed", "vm", vm, "point", p.ID, "took", time.Since(start))
	return p, nil
}

// planImport is the plan of an imported disk: the areas given, the areas
// the source's dirty bitmap marks, or a full read of the allocated areas.
func planImport(ctx context.Context, d ImportDisk, src source.Source, full bool, base *blockmap.Point) (Plan, error) {
	var plan Plan
	switch {
	case full:
		plan = Plan{Full: true, Reason: "--full given"}
	case d.HasChanged:
		plan = Plan{Since: "changed areas given", Areas: d.Changed, AreasKnown: true}
	case d.DirtyBitmap != "":
		ct, ok := src.(source.ChangeTracker)
		if !ok {
			return plan, fmt.Errorf("disk %s: %w", d.Name, source.ErrBitmapNotNBD)
		}
		dirty, err := ct.Changed(ctx)
		if err != nil {
			return plan, err
		}
		plan = Plan{Since: ct.Base(), Areas: dirty, AreasKnown: true}
	default:
		plan = Plan{Full: true, Reason: "no changed areas given: every block read and compared by hash"}
	}
	if base == nil {
		plan.Reason = "" // the point records "first backup of this disk"
	} else if _, ok := base.Disk(d.Name); !ok {
		plan.Reason = ""
	}
	return plan, nil
}

// importDisk reads one disk into the session.
func importDisk(ctx context.Context, sess *blockmap.Session, vm string, d ImportDisk, src source.Source, opts ImportOptions) error {
	var base *blockmap.Point
	if b, ok := sess.Base(); ok {
		base = &b
	}
	plan, err := planImport(ctx, d, src, opts.Full, base)
	if err != nil {
		return fmt.Errorf("import disk %s: %w", d.Name, err)
	}
	if plan.AreasKnown {
		if err := checkAreasInDisk(d.Name, plan.Areas, src.Size()); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	start := time.Now()
	w, plan, err := addDisk(ctx, sess, d.Name, src.Size(), plan, nil, func(_ context.Context, reason string) (Plan, error) {
		return Plan{Full: true, Reason: reason}, nil
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	slog.Debug("disk added", "disk", d.Name, "took", time.Since(start))
	meta := src.Meta()
	meta["read"] = "allocated areas"
	if plan.AreasKnown {
		meta["read"] = plan.Since
	}
	metaJSON, _ := json.Marshal(meta)
	w.SetMeta(metaJSON)
	start = time.Now()
	_, total, err := copyDisk(ctx, src, w, copyStep{VM: vm, Disk: d.Name, Plan: plan, Progress: opts.Progress})
	slog.Debug("disk copied", "disk", d.Name, "bytes", total, "took", time.Since(start))
	if err != nil {
		return fmt.Errorf("import disk %s from %s: %w", d.Name, d.Source, err)
	}
	return nil
}

// checkAreasInDisk refuses a changed area past the disk's end.
func checkAreasInDisk(disk string, areas []blockmap.Extent, size int64) error {
	for _, e := range areas {
		if e.Offset >= size || e.Length > size-e.Offset {
			return fmt.Errorf("changed area %d:%d of disk %s ends at %d, past the disk's end (%d bytes): is the list for another disk?", e.Offset, e.Length, disk, e.Offset+e.Length, size)
		}
	}
	return nil
}

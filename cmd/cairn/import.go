package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/blockmap"
)

func importCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "back up raw images, block devices or NBD exports as one new recovery point of a VM",
		Description: "Each SOURCE is a raw image, a block device, an NBD URI (nbd://HOST[:PORT]/EXPORT,\n" +
			"nbds://..., nbd+unix:///EXPORT?socket=PATH) or the unix socket of an NBD server.\n" +
			"The first import of a disk stores its non-zero blocks; later imports store only blocks\n" +
			"whose hash changed. With --changed or --changed-file only those areas are read (as\n" +
			"VMware's changed block tracking reports them); with --dirty-bitmap NAME only the areas\n" +
			"that QEMU dirty bitmap marks (qemu-nbd -B NAME exports it). A disk whose size changed,\n" +
			"or that has no earlier point, is read in full. Prints the new point's id.",
		ArgsUsage: "SOURCE [SOURCE ...] (one per --disk, in the same order)",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "vm", Required: true, Usage: "VM name"},
			&cli.StringSliceFlag{Name: "disk", Required: true, Usage: "disk name (repeatable, one per PATH)"},
			&cli.GenericFlag{Name: "changed", Value: &areaLists{}, Usage: "changed areas OFFSET:LENGTH,... of one disk (repeatable, one per disk in --disk order)"},
			&cli.GenericFlag{Name: "changed-file", Value: &areaLists{}, Usage: "file of changed areas, one OFFSET:LENGTH (or OFFSET LENGTH) per line, or a JSON list of {offset,length} (repeatable, one per disk)"},
			&cli.StringSliceFlag{Name: "dirty-bitmap", Usage: "NBD sources: read only the areas the qemu dirty bitmap `NAME` marks (once for every disk, or once per disk in --disk order; \"\" for none)"},
			&cli.BoolFlag{Name: "full", Usage: "read every disk whole even if it was backed up before"},
			&cli.StringFlag{Name: "consistency", Value: blockmap.ConsistencyImported, Usage: "consistency label of the point"},
			&cli.TimestampFlag{Name: "time", Layout: time.RFC3339, Usage: "capture time of the point (RFC 3339, default now)"},
			&cli.DurationFlag{Name: "nbd-stall-timeout", Value: 60 * time.Second, Usage: "NBD sources: fail a connection that makes no progress for this long (the handshake gets at most 30s of it)"},
			&cli.StringFlag{Name: "vm-config", Usage: "VM configuration JSON `FILE` (the format of a point's vm/config.json) kept with the point, so `cairn boot` can use it"},
		}, nbdTLSFlags()...),
		Action: importAction,
	}
}

type importDisk struct {
	name    string
	path    string
	changed []blockmap.Extent
	hasList bool
	bitmap  string // qemu dirty bitmap to read the changed areas from
}

func importAction(c *cli.Context) error {
	names, paths := c.StringSlice("disk"), c.Args().Slice()
	if len(paths) != len(names) {
		return fmt.Errorf("import: %d --disk names but %d paths: give one PATH per --disk, in the same order", len(names), len(paths))
	}
	disks := make([]importDisk, len(names))
	for i := range names {
		disks[i] = importDisk{name: names[i], path: paths[i]}
	}
	if err := parseChangedFlags(c, disks); err != nil {
		return err
	}
	if err := parseBitmapFlags(c, disks); err != nil {
		return err
	}
	tlsOpts, err := nbdTLSOptions(c)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if c.Duration("nbd-stall-timeout") <= 0 {
		return fmt.Errorf("import: --nbd-stall-timeout must be positive")
	}
	srcOpts := source.Options{TLS: tlsOpts, StallTimeout: c.Duration("nbd-stall-timeout")}
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	opts := blockmap.PointOptions{Consistency: c.String("consistency"), Purpose: "cairn import"}
	if f := c.String("vm-config"); f != "" {
		if opts.Attachments, err = readVMConfigFlag(f, names); err != nil {
			return err
		}
	}
	if t := c.Timestamp("time"); t != nil {
		if err := checkPointTime(*t, time.Now()); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		opts.Time = *t
	}
	p, err := importDisks(c.Context, repo, c.String("vm"), disks, c.Bool("full"), opts, srcOpts)
	if err != nil {
		return err
	}
	fmt.Println(p.ID)
	return nil
}

func importDisks(ctx context.Context, repo *blockmap.Repo, vm string, disks []importDisk, full bool, opts blockmap.PointOptions, srcOpts source.Options) (p blockmap.Point, err error) {
	srcs := make([]source.Source, len(disks))
	for i, d := range disks {
		o := srcOpts
		o.DirtyBitmap = d.bitmap
		src, err := source.Open(ctx, d.path, o)
		if err != nil {
			return p, fmt.Errorf("import disk %s: %w", d.name, err)
		}
		defer src.Close()
		srcs[i] = src
	}
	begin := time.Now()
	sess, err := repo.BeginPoint(ctx, vm, opts)
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
		if err := copyDisk(ctx, sess, d, srcs[i], full); err != nil {
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

// copyDisk reads one disk into the session: the given changed areas, the
// areas a dirty bitmap marks, or (full) every allocated area.
func copyDisk(ctx context.Context, sess *blockmap.Session, d importDisk, src source.Source, full bool) error {
	changed, hasList := d.changed, d.hasList
	var how string
	switch {
	case full:
	case hasList:
		how = "changed areas given"
	case d.bitmap != "":
		ns, ok := src.(source.ChangeTracker)
		if !ok {
			return fmt.Errorf("import disk %s: --dirty-bitmap applies to NBD sources only", d.name)
		}
		dirty, err := ns.Changed(ctx)
		if err != nil {
			return fmt.Errorf("import disk %s: %w", d.name, err)
		}
		changed, hasList, how = dirty, true, "dirty bitmap "+d.bitmap
	}
	meta := src.Meta()
	start := time.Now()
	reason := fullReason(full, hasList)
	if base, ok := sess.Base(); !ok {
		reason = "" // the point records "first backup of this disk"
	} else if _, ok := base.Disk(d.name); !ok {
		reason = ""
	}
	if hasList {
		if err := checkAreasInDisk(d.name, changed, src.Size()); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	w, err := sess.AddDisk(ctx, d.name, src.Size(), blockmap.DiskOptions{Full: full || !hasList, FullReason: reason, Changed: changed})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	slog.Debug("disk added", "disk", d.name, "took", time.Since(start))
	extents := changed
	if isFull, _ := w.Full(); isFull {
		if extents, err = src.Allocated(ctx); err != nil {
			return fmt.Errorf("import disk %s: %w", d.name, err)
		}
		how = "allocated areas"
	}
	meta["read"] = how
	metaJSON, _ := json.Marshal(meta)
	w.SetMeta(metaJSON)
	extents = copier.Align(extents, w.BlockSize(), w.Size())
	bar := newProgressBar(d.name, copier.Total(extents))
	copts := src.CopyOptions()
	copts.Progress = bar.Add
	start = time.Now()
	_, err = copier.Copy(ctx, src, w, extents, copts)
	bar.Finish()
	slog.Debug("disk copied", "disk", d.name, "bytes", copier.Total(extents), "took", time.Since(start))
	if err != nil {
		return fmt.Errorf("import disk %s from %s: %w", d.name, d.path, err)
	}
	return nil
}

func fullReason(full, hasList bool) string {
	switch {
	case full:
		return "--full given"
	case !hasList:
		return "no changed areas given: every block read and compared by hash"
	}
	return ""
}

// parseBitmapFlags gives each disk its --dirty-bitmap: one name for all,
// or one per disk.
func parseBitmapFlags(c *cli.Context, disks []importDisk) error {
	names := c.StringSlice("dirty-bitmap")
	switch {
	case len(names) == 0:
		return nil
	case len(names) == 1:
		for i := range disks {
			disks[i].bitmap = names[0]
		}
	case len(names) == len(disks):
		for i := range disks {
			disks[i].bitmap = names[i]
		}
	default:
		return fmt.Errorf("import: %d --dirty-bitmap names for %d disks: give one for every disk, or one per --disk in the same order", len(names), len(disks))
	}
	for _, d := range disks {
		if d.bitmap != "" && d.hasList {
			return fmt.Errorf("import: disk %s has both --dirty-bitmap and changed areas: give one of them", d.name)
		}
		if c.Bool("full") && d.bitmap != "" {
			return fmt.Errorf("import: --full reads every disk whole: drop --dirty-bitmap, or --full")
		}
	}
	return nil
}

func parseChangedFlags(c *cli.Context, disks []importDisk) error {
	lists := flagLists(c.Generic("changed"))
	files := flagLists(c.Generic("changed-file"))
	if len(lists) > 0 && len(files) > 0 {
		return fmt.Errorf("import: give --changed or --changed-file, not both")
	}
	if len(files) > 0 {
		lists = nil
		for _, f := range files {
			data, err := readChangedFile(c.Context, f)
			if err != nil {
				return fmt.Errorf("import: --changed-file: %w", err)
			}
			lists = append(lists, data)
		}
	}
	if len(lists) == 0 {
		return nil
	}
	if len(lists) != len(disks) {
		return fmt.Errorf("import: %d changed-area lists for %d disks: give one per --disk, in the same order", len(lists), len(disks))
	}
	for i, l := range lists {
		ext, err := parseExtents(l)
		if err != nil {
			return fmt.Errorf("import: changed areas of disk %s: %w", disks[i].name, err)
		}
		disks[i].changed, disks[i].hasList = ext, true
	}
	return nil
}

// parseExtents reads OFFSET:LENGTH items separated by commas, spaces or
// newlines, "OFFSET LENGTH" lines, or a JSON list of objects with
// offset/start/startOffset and length.
func parseExtents(s string) ([]blockmap.Extent, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var items []struct {
			Offset      *int64 `json:"offset"`
			Start       *int64 `json:"start"`
			StartOffset *int64 `json:"startOffset"`
			Length      int64  `json:"length"`
		}
		if err := json.Unmarshal([]byte(s), &items); err != nil {
			return nil, fmt.Errorf("not a JSON list of {offset, length}: %w", err)
		}
		if len(items) > maxChangedAreas {
			return nil, tooManyAreas(len(items))
		}
		out := make([]blockmap.Extent, 0, len(items))
		for _, it := range items {
			var off int64
			switch {
			case it.Offset != nil:
				off = *it.Offset
			case it.Start != nil:
				off = *it.Start
			case it.StartOffset != nil:
				off = *it.StartOffset
			}
			out = append(out, blockmap.Extent{Offset: off, Length: it.Length})
		}
		return checkExtents(out)
	}
	var out []blockmap.Extent
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Fields(line); len(f) == 2 && !strings.Contains(line, ":") {
			line = f[0] + ":" + f[1]
		}
		for _, item := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			off, length, ok := strings.Cut(item, ":")
			if !ok {
				return nil, fmt.Errorf("%q is not OFFSET:LENGTH", item)
			}
			o, err1 := strconv.ParseInt(off, 0, 64)
			l, err2 := strconv.ParseInt(length, 0, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%q is not OFFSET:LENGTH in bytes", item)
			}
			if len(out) == maxChangedAreas {
				return nil, tooManyAreas(len(out) + 1)
			}
			out = append(out, blockmap.Extent{Offset: o, Length: l})
		}
	}
	return checkExtents(out)
}

func checkExtents(ext []blockmap.Extent) ([]blockmap.Extent, error) {
	for _, e := range ext {
		if e.Offset < 0 || e.Length < 0 {
			return nil, fmt.Errorf("area %d:%d has a negative offset or length", e.Offset, e.Length)
		}
	}
	return ext, nil
}

func tooManyAreas(n int) error {
	return fmt.Errorf("more than %d areas (%d or more): too many for a changed-area list (VMware reports a few thousand per disk); read the disk whole instead (leave out --changed)", maxChangedAreas, n)
}

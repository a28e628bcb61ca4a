package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd"
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
			&cli.StringFlag{Name: "config", Usage: "judge suspicious changes with the anomaly: thresholds of this cairn.yaml `FILE`'s job without vcenter whose vms: name --vm (the flags below override them)"},
		}, append(nbdTLSFlags(), anomalyFlags()...)...),
		Action: importAction,
	}
}

func importAction(c *cli.Context) error {
	names, paths := c.StringSlice("disk"), c.Args().Slice()
	if len(paths) != len(names) {
		return fmt.Errorf("import: %d --disk names but %d paths: give one PATH per --disk, in the same order", len(names), len(paths))
	}
	disks := make([]backupd.ImportDisk, len(names))
	for i := range names {
		disks[i] = backupd.ImportDisk{Name: names[i], Source: paths[i]}
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
	th, err := importThresholds(c)
	if err != nil {
		return err
	}
	opts := backupd.ImportOptions{
		Anomaly:  th,
		Full:     c.Bool("full"),
		Point:    blockmap.PointOptions{Consistency: c.String("consistency"), Purpose: "cairn import"},
		Source:   source.Options{TLS: tlsOpts, StallTimeout: c.Duration("nbd-stall-timeout")},
		Progress: barProgress,
	}
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	if f := c.String("vm-config"); f != "" {
		if opts.Point.Attachments, err = readVMConfigFlag(f, names); err != nil {
			return err
		}
	}
	if t := c.Timestamp("time"); t != nil {
		if err := checkPointTime(*t, time.Now()); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		opts.Point.Time = *t
	}
	p, err := backupd.Import(c.Context, repo, c.String("vm"), disks, opts)
	if err != nil {
		return err
	}
	fmt.Println(p.ID)
	warnSuspicious(p)
	return nil
}

// barProgress draws one progress bar per disk (on a terminal).
func barProgress(_, disk string, total int64) (func(int64), func()) {
	bar := newProgressBar(disk, total)
	return bar.Add, bar.Finish
}

// parseBitmapFlags gives each disk its --dirty-bitmap: one name for all,
// or one per disk.
func parseBitmapFlags(c *cli.Context, disks []backupd.ImportDisk) error {
	names := c.StringSlice("dirty-bitmap")
	switch {
	case len(names) == 0:
		return nil
	case len(names) == 1:
		for i := range disks {
			disks[i].DirtyBitmap = names[0]
		}
	case len(names) == len(disks):
		for i := range disks {
			disks[i].DirtyBitmap = names[i]
		}
	default:
		return fmt.Errorf("import: %d --dirty-bitmap names for %d disks: give one for every disk, or one per --disk in the same order", len(names), len(disks))
	}
	for _, d := range disks {
		if d.DirtyBitmap != "" && d.HasChanged {
			return fmt.Errorf("import: disk %s has both --dirty-bitmap and changed areas: give one of them", d.Name)
		}
		if c.Bool("full") && d.DirtyBitmap != "" {
			return fmt.Errorf("import: --full reads every disk whole: drop --dirty-bitmap, or --full")
		}
	}
	return nil
}

func parseChangedFlags(c *cli.Context, disks []backupd.ImportDisk) error {
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
			return fmt.Errorf("import: changed areas of disk %s: %w", disks[i].Name, err)
		}
		disks[i].Changed, disks[i].HasChanged = ext, true
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

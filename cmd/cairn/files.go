package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

func fileCommands() []*cli.Command {
	pointFlags := func(extra ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{
			&cli.StringFlag{Name: "vm", Required: true, Usage: "VM name"},
			&cli.StringFlag{Name: "point", Value: "latest", Usage: "point id, generation number or latest"},
		}, extra...)
	}
	volFlags := func(extra ...cli.Flag) []cli.Flag {
		return pointFlags(append([]cli.Flag{
			&cli.StringFlag{Name: "disk", Usage: "disk name (or --volume)"},
			&cli.StringFlag{Name: "part", Value: "1", Usage: "partition number (1, p1, ...) or whole (left out on a disk without a partition table: whole)"},
			volumeFlag,
			remoteFlag, limitRateFlag,
		}, extra...)...)
	}
	return []*cli.Command{
		{
			Name:   "partitions",
			Usage:  "print the partition tables and filesystems of a recovery point's disks, and the MD arrays, LVM volume groups, dynamic volumes and btrfs filesystems across them (md/ARRAY, lvm/VG, ldm/VOLUME, btrfs/NAME)",
			Flags:  pointFlags(&cli.StringFlag{Name: "disk", Usage: "only this disk, or one volume across disks as the DISK column names it (md/ARRAY, lvm/VG, ldm/VOLUME, btrfs/NAME)"}, jsonFlag()),
			Action: partitionsAction,
		},
		{
			Name:      "files",
			Usage:     "list a directory of a guest filesystem in a recovery point, or show one file, as ls -l does (mode, uid:gid, size or device, mtime)",
			ArgsUsage: "[PATH]",
			Flags:     volFlags(jsonFlag()),
			Action:    filesAction,
		},
		{
			Name:      "restore-file",
			Usage:     "copy a file or directory tree out of a guest filesystem, keeping modes, times, extended attributes and ACLs (owners, trusted.* and security.* as root)",
			ArgsUsage: "PATH DEST",
			Description: "DEST names the restored copy of PATH, as with cp -a; when DEST is an existing\n" +
				"directory or ends in /, PATH is restored into it under its own name (DEST/NAME, the\n" +
				"same on every run). Missing parent directories of DEST are created.\n" +
				"Restores every entry it can: an entry that cannot be read or written is reported on\n" +
				"one line (FAILED path: reason) and the rest goes on; a summary follows and the exit\n" +
				"status is non-zero when anything failed. Names longer than 255 bytes get a\n" +
				"deterministic shortened name (RENAMED line, counted in the summary). FIFOs are created; device nodes\n" +
				"too when run as root, else they are listed as SKIPPED, like sockets.",
			Flags: volFlags(&cli.BoolFlag{Name: "fail-fast", Usage: "stop at the first entry that cannot be restored"},
				&cli.BoolFlag{Name: "no-xattrs", Usage: "do not restore extended attributes, ACLs, file capabilities and SELinux labels"}),
			Action: restoreFileAction,
		},
	}
}

// openedDisk is one disk of a point, open for reading.
type openedDisk struct {
	repo   *blockmap.Repo
	point  blockmap.Point
	dr     pointDisk
	others []*blockmap.DiskReader // every disk, for --volume
	rem    io.Closer              // the remote the disk is read from (--remote), or nil
}

func openPointDisk(c *cli.Context, disk string) (*openedDisk, error) {
	if c.String("remote") != "" {
		return openRemotePointDisk(c, disk)
	}
	repo, err := openRepo(c)
	if err != nil {
		return nil, err
	}
	p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
	if err != nil {
		repo.Close()
		return nil, err
	}
	dr, err := repo.OpenDisk(c.Context, p, disk)
	if err != nil {
		repo.Close()
		return nil, err
	}
	return &openedDisk{repo: repo, point: p, dr: dr}, nil
}

func (o *openedDisk) Close() {
	if o.dr != nil {
		o.dr.Close()
	}
	for _, dr := range o.others {
		dr.Close()
	}
	if o.rem != nil {
		o.rem.Close()
	}
	o.repo.Close()
}

// volumeJSON is one partition in `cairn partitions --json`.
type volumeJSON struct {
	Name       string   `json:"name"`
	Number     int      `json:"number,omitempty"`
	Start      int64    `json:"start"`
	Size       int64    `json:"size"`
	Type       string   `json:"type,omitempty"`
	TypeName   string   `json:"type_name,omitempty"`
	PartName   string   `json:"partition_name,omitempty"`
	GUID       string   `json:"guid,omitempty"`
	Bootable   bool     `json:"bootable,omitempty"`
	Extended   bool     `json:"extended,omitempty"` // MBR extended container of the logical partitions
	Filesystem string   `json:"filesystem"`
	Label      string   `json:"label,omitempty"`
	UUID       string   `json:"uuid,omitempty"`
	Used       int64    `json:"used"`
	Free       int64    `json:"free"`
	Browsable  bool     `json:"browsable"`
	VG         string   `json:"volume_group,omitempty"` // an LVM PV: its VG
	Array      string   `json:"md_array,omitempty"`     // an MD member: md/<array>
	LDM        []string `json:"ldm_volumes,omitempty"`  // a dynamic disk's partition: the ldm/<volume>s on it
	Why        string   `json:"why_not_browsable,omitempty"`
	Problems   []string `json:"problems,omitempty"`
	Recovered  string   `json:"recovered,omitempty"` // journal or log replayed in memory (crash-consistent image)
	// VolumeError: the volume itself (an LV, an array, a dynamic
	// volume) cannot be read, so nothing is known of its filesystem.
	VolumeError string `json:"volume_error,omitempty"`
	// SizeDeclared: Size is what the volume's metadata declares (an MD
	// array that cannot be assembled), not what could be read.
	SizeDeclared bool   `json:"size_declared,omitempty"`
	Btrfs        string `json:"btrfs,omitempty"` // a device of a btrfs of several devices: btrfs/<name>
}

type diskTableJSON struct {
	Disk     string   `json:"disk"`
	Size     int64    `json:"size"`
	Table    string   `json:"table"`
	DiskGUID string   `json:"disk_guid,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	MadeOf   []string `json:"made_of,omitempty"` // lvm/<vg>: pvN=disk/part; md/<array>: slotN=disk/part
	// Allocated and Unallocated are a VG's extents in use by LVs and free, in bytes.
	Allocated   int64        `json:"allocated,omitempty"`
	Unallocated int64        `json:"unallocated,omitempty"`
	Partitions  []volumeJSON `json:"partitions"`
}

func describeDisk(dr *blockmap.DiskReader) (diskTableJSON, error) {
	out := diskTableJSON{Disk: dr.Disk().Name, Size: dr.Size()}
	vols, t, err := volumes.OfDisk(dr, dr.Size())
	if err != nil {
		return out, fmt.Errorf("disk %s: %w", dr.Disk().Name, err)
	}
	out.Table, out.DiskGUID, out.Warnings = string(t.Type), t.DiskGUID, t.Warnings
	for _, v := range vols {
		j := volumeJSON{Name: v.Name, Start: v.Offset, Size: v.Size, Filesystem: v.Detection.Type, Label: v.Detection.Label,
			UUID: v.Detection.UUID, Used: v.Detection.Used, Free: v.Detection.Free}
		if p := v.Partition; p != nil {
			j.Number, j.Type, j.TypeName, j.PartName, j.GUID, j.Bootable, j.Problems = p.Number, p.Type, p.TypeName, p.Name, p.GUID, p.Bootable, p.Problems
		}
		fsys, err := fsopen.Open(dr, v.Offset, v.Size, v.Detection)
		if err != nil {
			j.Why = strings.SplitN(err.Error(), "\n", 2)[0]
		} else {
			j.Browsable = true
			info := fsys.Info()
			if info.Used >= 0 {
				j.Used, j.Free = info.Used, info.Free
			}
			if j.Label == "" {
				j.Label = info.Label
			}
			j.Recovered = info.Recovered
		}
		out.Partitions = append(out.Partitions, j)
	}
	// The MBR extended container holds no filesystem, but it is a
	// partition of the table: list it where its number puts it.
	for _, p := range t.Partitions {
		if !p.Extended {
			continue
		}
		j := volumeJSON{Name: fmt.Sprintf("p%d", p.Number), Number: p.Number, Start: p.Start, Size: p.Size, Type: p.Type,
			TypeName: p.TypeName, Extended: true, Used: -1, Free: -1, Problems: p.Problems,
			Why: "extended partition: the container of the logical partitions (p5 and up), which are listed on their own"}
		at := len(out.Partitions)
		for i, v := range out.Partitions {
			if v.Number > p.Number {
				at = i
				break
			}
		}
		out.Partitions = slices.Insert(out.Partitions, at, j)
	}
	return out, nil
}

func partitionsAction(c *cli.Context) error {
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
	if err != nil {
		return err
	}
	// --disk names a disk or a volume across disks (md/ARRAY, lvm/VG,
	// ldm/VOLUME, btrfs/NAME, as the DISK column shows them); a disk's
	// partitions are described with the volumes they belong to.
	var tables []diskTableJSON
	for _, d := range p.Disks {
		dr, err := repo.OpenDisk(c.Context, p, d.Name)
		if err != nil {
			return err
		}
		t, err := describeDisk(dr)
		dr.Close()
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}
	if tables, err = addLVM(c.Context, repo, p, tables); err != nil {
		return err
	}
	if only := c.String("disk"); only != "" {
		var names []string
		var kept []diskTableJSON
		for _, t := range tables {
			names = append(names, t.Disk)
			if t.Disk == only {
				kept = append(kept, t)
			}
		}
		if kept == nil {
			return fmt.Errorf("point %s of %s has no disk or volume %q (it has: %s)", p.ID, p.VM, only, strings.Join(names, ", "))
		}
		tables = kept
	}
	if c.Bool("json") {
		return printJSON(tables)
	}
	return printPartitionTable(os.Stdout, tables)
}

// printPartitionTable prints the tables' partitions and volumes as one
// aligned table, then each disk's or volume's notes (warnings, members,
// allocation) as plain lines below it: a note inside the table would end
// text/tabwriter's column blocks and misalign every row after it.
func printPartitionTable(w io.Writer, tables []diskTableJSON) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISK\tTABLE\tPART\tSTART\tSIZE\tTYPE\tNAME\tFS\tLABEL\tUUID\tUSED\tFREE")
	for _, t := range tables {
		for _, v := range t.Partitions {
			used, free := "-", "-"
			if v.Used >= 0 && v.Browsable {
				used, free = bytesize.IEC(v.Used), bytesize.IEC(v.Free)
			}
			typ := v.TypeName
			if typ == "" {
				typ = v.Type
			}
			fs := v.Filesystem
			switch {
			case v.VolumeError != "":
				fs = "(unreadable volume)"
			case v.Extended:
				fs = "(extended container)"
			case v.VG != "":
				fs += " (PV of " + v.VG + ")"
			case v.Array != "":
				fs += " (member of " + v.Array + ")"
			case v.Btrfs != "":
				fs += " (device of " + v.Btrfs + ")"
			case len(v.LDM) > 0:
				fs += " (holds " + strings.Join(v.LDM, ", ") + ")"
			case !v.Browsable:
				fs += " (not browsable)"
			case v.Recovered != "":
				fs += " (recovered)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Disk, t.Table, v.Name, v.Start, bytesize.IEC(v.Size),
				orDash(typ), orDash(v.PartName), fs, orDash(v.Label), orDash(v.UUID), used, free)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range tables {
		for _, warn := range t.Warnings {
			fmt.Fprintf(w, "%s: warning: %s\n", t.Disk, warn)
		}
		for _, v := range t.Partitions {
			if v.VolumeError != "" {
				fmt.Fprintf(w, "%s/%s: cannot be read: %s\n", t.Disk, v.Name, v.VolumeError)
			}
		}
		if len(t.MadeOf) > 0 {
			fmt.Fprintf(w, "%s: made of %s\n", t.Disk, strings.Join(t.MadeOf, " "))
		}
		if t.Allocated > 0 || t.Unallocated > 0 {
			fmt.Fprintf(w, "%s: allocated %s, free %s\n", t.Disk, bytesize.IEC(t.Allocated), bytesize.IEC(t.Unallocated))
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// openVolume opens the guest filesystem of --disk/--part of a point.
func openVolume(c *cli.Context) (*openedDisk, partinfo.Filesystem, error) {
	if v := c.String("volume"); v != "" {
		if c.IsSet("disk") || c.IsSet("part") {
			return nil, nil, fmt.Errorf("give either --volume or --disk/--part, not both")
		}
		return openSpannedVolume(c, v)
	}
	if c.String("disk") == "" {
		return nil, nil, fmt.Errorf("which volume? give --disk (and --part), or --volume lvm/VG/LV; `cairn partitions` lists them")
	}
	o, err := openPointDisk(c, c.String("disk"))
	if err != nil {
		return nil, nil, err
	}
	vols, _, err := volumes.OfDisk(o.dr, o.dr.Size())
	if err != nil {
		o.Close()
		return nil, nil, fmt.Errorf("disk %s: %w", c.String("disk"), err)
	}
	want := wantedPart(c.String("part"), c.IsSet("part"), vols)
	var names []string
	for _, v := range vols {
		names = append(names, volumeChoice(v))
		if v.Name != want {
			continue
		}
		fsys, err := fsopen.Open(o.dr, v.Offset, v.Size, v.Detection)
		if err != nil {
			o.Close()
			return nil, nil, fmt.Errorf("disk %s partition %s: %s%s", c.String("disk"), v.Name, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "),
				openAdvice(v.Detection.Type, err, c.String("vm")))
		}
		return o, fsys, nil
	}
	o.Close()
	if len(vols) == 1 && vols[0].Name == "whole" {
		return nil, nil, fmt.Errorf("disk %s has no partition table, so no partition %q: the whole disk is one volume (%s), give --part whole or leave --part out", c.String("disk"), c.String("part"), names[0])
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("disk %s has a partition table with no partitions: there is no filesystem to read", c.String("disk"))
	}
	return nil, nil, fmt.Errorf("disk %s has no partition %q: give --part with one of: %s", c.String("disk"), c.String("part"), strings.Join(names, ", "))
}

// wantedPart is the volume name (p1, p2, ..., whole) that --part
// selects among a disk's volumes. Left out, --part means partition 1 —
// or the whole disk when the disk has no partition table (a filesystem
// made on the whole disk, as data disks often are): its one volume.
func wantedPart(part string, given bool, vols []volumes.Volume) string {
	if !given && len(vols) == 1 && vols[0].Name == "whole" {
		return "whole"
	}
	want := strings.TrimPrefix(part, "p")
	if want != "whole" {
		want = "p" + want
	}
	return want
}

// volumeChoice names a volume for an error listing the choices: its
// name and what was found on it ("p2 (xfs)", "whole (ext4)").
func volumeChoice(v volumes.Volume) string {
	if v.Detection.Type == "" {
		return v.Name + " (no filesystem recognised)"
	}
	return v.Name + " (" + v.Detection.Type + ")"
}

// volumeAdvice is what files and restore-file add when --disk/--part
// names a piece of a volume assembled across disks (the mount's fs/md/,
// fs/lvm/ and fs/ldm/ paths mean nothing to them): the --volume to give.
func volumeAdvice(detected, vm string) string {
	var kind string
	switch detected {
	case partinfo.TypeMDMember:
		kind = "--volume md/ARRAY"
	case "lvm2":
		kind = "--volume lvm/VG/LV"
	case partinfo.TypeLDM:
		kind = "--volume ldm/VOLUME"
	default:
		return ""
	}
	return fmt.Sprintf(" Read the assembled volume with %s (`cairn partitions --vm %s` lists them).", kind, vm)
}

// restoreDest is where restore-file writes guest path p: dest itself, or
// dest/<base of p> when dest is an existing directory (as cp -a does).
// Missing parents of the result are created, so that a DEST such as
// ./restored/etc works without a mkdir first.
func restoreDest(dest, p string) (string, error) {
	// A trailing slash says "into this directory", existing or not: the
	// file or tree lands at DEST/NAME on the first run as on the next
	// (DEST/ was made the directory itself, and a file restored to a
	// missing DEST/ failed after its directory had been created).
	into := strings.HasSuffix(dest, "/") && p != "."
	if fi, err := os.Stat(dest); (into || err == nil && fi.IsDir()) && p != "." {
		dest = filepath.Join(dest, restoreName(path.Base(p)))
	}
	if parent := filepath.Dir(dest); parent != "" {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return "", fmt.Errorf("DEST %s: %w", dest, err)
		}
	}
	return dest, nil
}

// guestPath cleans a guest path for io/fs ("" and "/" are the root).
func guestPath(p string) (string, error) { return guestfind.CleanPath(p) }

type fileJSON struct {
	Name string `json:"name"`
	// NameBytes is the name's bytes (base64) when it is not UTF-8:
	// JSON strings cannot carry it, "name" has U+FFFD in its place.
	NameBytes []byte    `json:"name_bytes,omitempty"`
	Mode      string    `json:"mode"` // as ls -l shows it
	UID       *uint32   `json:"uid,omitempty"`
	GID       *uint32   `json:"gid,omitempty"`
	Size      int64     `json:"size"`
	Device    string    `json:"device,omitempty"` // major:minor of a device node
	Mtime     time.Time `json:"mtime"`
	Target    string    `json:"target,omitempty"`
}

func filesAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("files: give one PATH (a directory to list, or a file), got %d: %s", c.NArg(), strings.Join(c.Args().Slice(), " "))
	}
	o, fsys, err := openVolume(c)
	if err != nil {
		return err
	}
	defer o.Close()
	p, err := guestPath(c.Args().First())
	if err != nil {
		return err
	}
	gfs := partinfo.AsFS(fsys)
	st, err := fs.Stat(gfs, p)
	if err != nil {
		return guestPathError("files", p, err)
	}
	var infos []fs.FileInfo
	if st.IsDir() {
		entries, err := fs.ReadDir(gfs, p)
		if err != nil {
			return fmt.Errorf("files: %w", err)
		}
		for _, e := range entries {
			fi, err := fs.Lstat(gfs, path.Join(p, e.Name()))
			if err != nil {
				return fmt.Errorf("files: %w", err)
			}
			infos = append(infos, fi)
		}
	} else {
		// One entry, as ls -l shows it: a symlink is the link itself,
		// with its target (Stat followed it to know it is no directory).
		lfi, err := fs.Lstat(gfs, p)
		if err != nil {
			return guestPathError("files", p, err)
		}
		infos = append(infos, lfi)
	}
	var out []fileJSON
	for _, fi := range infos {
		j := fileJSON{Name: fi.Name(), Mode: lsMode(fi.Mode()), Size: fi.Size(), Mtime: fi.ModTime().UTC()}
		fileEntry(&j, fi)
		if !utf8.ValidString(j.Name) {
			j.NameBytes = []byte(j.Name)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			lp := path.Join(p, fi.Name())
			if !st.IsDir() {
				lp = p
			}
			j.Target, _ = fs.ReadLink(gfs, lp)
		}
		out = append(out, j)
	}
	if c.Bool("json") {
		if out == nil {
			out = []fileJSON{}
		}
		return printJSON(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', tabwriter.AlignRight)
	for _, j := range out {
		name := displayName(j.Name)
		if j.Target != "" {
			name += " -> " + displayName(j.Target)
		}
		owner, size := "-", fmt.Sprint(j.Size)
		if j.UID != nil {
			owner = fmt.Sprintf("%d:%d", *j.UID, *j.GID)
		}
		if j.Device != "" {
			size = j.Device
		}
		fmt.Fprintf(tw, "%s\t %s\t %s\t %s\t %s\n", j.Mode, owner, size, j.Mtime.Format("2006-01-02 15:04:05"), name)
	}
	return tw.Flush()
}

func restoreFileAction(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("restore-file: give PATH (in the guest) and DEST (here)")
	}
	if err := refuseInsideRepo(c.String("repo"), c.Args().Get(1), "DEST"); err != nil {
		return fmt.Errorf("restore-file: %w", err)
	}
	o, fsys, err := openVolume(c)
	if err != nil {
		return err
	}
	defer o.Close()
	p, err := guestPath(c.Args().Get(0))
	if err != nil {
		return err
	}
	if _, err := fs.Lstat(partinfo.AsFS(fsys), p); err != nil {
		return guestPathError("restore-file", p, err) // before DEST or its parents are made
	}
	dest, err := restoreDest(c.Args().Get(1), p)
	if err != nil {
		return fmt.Errorf("restore-file: %w", err)
	}
	rep, err := restoreTree(c.Context, fsys, p, dest, restoreOptions{failFast: c.Bool("fail-fast"), noXattrs: c.Bool("no-xattrs"), report: os.Stderr})
	fmt.Println(rep.summary(dest))
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("restore-file: interrupted after %d entries (listed in the summary above); the file being written was removed, nothing partly written is left in %s", rep.restored, dest)
	}
	if err != nil {
		return fmt.Errorf("restore-file: %w", err)
	}
	if rep.noSpace != nil { // the hint (advice.go) names the full filesystem and the fix
		return fmt.Errorf("restore-file: %d entries failed (each listed above with its reason; the rest is restored in %s), the first for want of space: %w", rep.failed, dest, rep.noSpace)
	}
	if rep.failed > 0 && rep.restored == 0 {
		return fmt.Errorf("restore-file: nothing restored: %d failed (listed above with the reason)", rep.failed)
	}
	if rep.failed > 0 {
		return fmt.Errorf("restore-file: %d entries failed (each listed above with its reason); the rest is restored in %s", rep.failed, dest)
	}
	return nil
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
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
			&cli.StringFlag{Name: "disk", Required: true, Usage: "disk name"},
			&cli.StringFlag{Name: "part", Value: "1", Usage: "partition number (1, p1, ...) or whole"},
		}, extra...)...)
	}
	return []*cli.Command{
		{
			Name:   "partitions",
			Usage:  "print the partition tables and filesystems of a recovery point's disks",
			Flags:  pointFlags(&cli.StringFlag{Name: "disk", Usage: "only this disk"}, &cli.BoolFlag{Name: "json", Usage: "print JSON"}),
			Action: partitionsAction,
		},
		{
			Name:      "files",
			Usage:     "list a directory of a guest filesystem in a recovery point",
			ArgsUsage: "[PATH]",
			Flags:     volFlags(&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
			Action:    filesAction,
		},
		{
			Name:      "restore-file",
			Usage:     "copy a file or directory tree out of a guest filesystem, keeping modes, times, extended attributes and ACLs (owners, trusted.* and security.* as root)",
			ArgsUsage: "PATH DEST",
			Flags:     volFlags(&cli.BoolFlag{Name: "no-xattrs", Usage: "do not restore extended attributes, ACLs, file capabilities and SELinux labels"}),
			Action:    restoreFileAction,
		},
	}
}

// openedDisk is one disk of a point, open for reading.
type openedDisk struct {
	repo  *blockmap.Repo
	point blockmap.Point
	dr    *blockmap.DiskReader
}

func openPointDisk(c *cli.Context, disk string) (*openedDisk, error) {
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
	o.dr.Close()
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
	Filesystem string   `json:"filesystem"`
	Label      string   `json:"label,omitempty"`
	UUID       string   `json:"uuid,omitempty"`
	Used       int64    `json:"used"`
	Free       int64    `json:"free"`
	Browsable  bool     `json:"browsable"`
	Why        string   `json:"why_not_browsable,omitempty"`
	Problems   []string `json:"problems,omitempty"`
	Recovered  string   `json:"recovered,omitempty"` // journal or log replayed in memory (crash-consistent image)
}

type diskTableJSON struct {
	Disk       string       `json:"disk"`
	Size       int64        `json:"size"`
	Table      string       `json:"table"`
	DiskGUID   string       `json:"disk_guid,omitempty"`
	Warnings   []string     `json:"warnings,omitempty"`
	Partitions []volumeJSON `json:"partitions"`
}

func describeDisk(dr *blockmap.DiskReader) (diskTableJSON, error) {
	out := diskTableJSON{Disk: dr.Disk().Name, Size: dr.Size()}
	vols, t, err := guest.Volumes(dr, dr.Size())
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
	var tables []diskTableJSON
	for _, d := range p.Disks {
		if only := c.String("disk"); only != "" && d.Name != only {
			continue
		}
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
	if len(tables) == 0 {
		return fmt.Errorf("point %s of %s has no disk %q", p.ID, p.VM, c.String("disk"))
	}
	if c.Bool("json") {
		return printJSON(tables)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISK\tTABLE\tPART\tSTART\tSIZE\tTYPE\tNAME\tFS\tLABEL\tUUID\tUSED\tFREE")
	for _, t := range tables {
		for _, v := range t.Partitions {
			used, free := "-", "-"
			if v.Used >= 0 && v.Browsable {
				used, free = humanBytes(v.Used), humanBytes(v.Free)
			}
			typ := v.TypeName
			if typ == "" {
				typ = v.Type
			}
			fs := v.Filesystem
			if !v.Browsable {
				fs += " (not browsable)"
			} else if v.Recovered != "" {
				fs += " (recovered)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Disk, t.Table, v.Name, v.Start, humanBytes(v.Size),
				orDash(typ), orDash(v.PartName), fs, orDash(v.Label), orDash(v.UUID), used, free)
		}
		for _, w := range t.Warnings {
			fmt.Fprintf(tw, "%s\twarning: %s\n", t.Disk, w)
		}
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// openVolume opens the guest filesystem of --disk/--part of a point.
func openVolume(c *cli.Context) (*openedDisk, partinfo.Filesystem, error) {
	o, err := openPointDisk(c, c.String("disk"))
	if err != nil {
		return nil, nil, err
	}
	want := strings.TrimPrefix(c.String("part"), "p")
	if want != "whole" {
		want = "p" + want
	}
	vols, _, err := guest.Volumes(o.dr, o.dr.Size())
	if err != nil {
		o.Close()
		return nil, nil, fmt.Errorf("disk %s: %w", c.String("disk"), err)
	}
	var names []string
	for _, v := range vols {
		names = append(names, v.Name)
		if v.Name != want {
			continue
		}
		fsys, err := fsopen.Open(o.dr, v.Offset, v.Size, v.Detection)
		if err != nil {
			o.Close()
			return nil, nil, fmt.Errorf("disk %s partition %s: %s", c.String("disk"), v.Name, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "))
		}
		return o, fsys, nil
	}
	o.Close()
	return nil, nil, fmt.Errorf("disk %s has no partition %q (it has: %s)", c.String("disk"), c.String("part"), strings.Join(names, ", "))
}

// guestPath cleans a guest path for io/fs ("" and "/" are the root).
func guestPath(p string) (string, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return ".", nil
	}
	if !fs.ValidPath(p) {
		return "", fmt.Errorf("path %q is not valid", p)
	}
	return p, nil
}

type fileJSON struct {
	Name   string    `json:"name"`
	Mode   string    `json:"mode"`
	Size   int64     `json:"size"`
	Mtime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"`
}

func filesAction(c *cli.Context) error {
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
		return fmt.Errorf("files: %w", err)
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
		infos = append(infos, st)
	}
	var out []fileJSON
	for _, fi := range infos {
		j := fileJSON{Name: fi.Name(), Mode: fi.Mode().String(), Size: fi.Size(), Mtime: fi.ModTime().UTC()}
		if fi.Mode()&fs.ModeSymlink != 0 {
			j.Target, _ = fs.ReadLink(gfs, path.Join(p, fi.Name()))
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
		name := j.Name
		if j.Target != "" {
			name += " -> " + j.Target
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t %s\n", j.Mode, j.Size, j.Mtime.Format("2006-01-02 15:04:05"), name)
	}
	return tw.Flush()
}

func restoreFileAction(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("restore-file: give PATH (in the guest) and DEST (here)")
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
	dest := c.Args().Get(1)
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() && p != "." {
		dest = filepath.Join(dest, path.Base(p))
	}
	gfs := partinfo.AsFS(fsys)
	if c.Bool("no-xattrs") {
		gfs = hideXattrs(gfs)
	}
	n, err := restoreTree(c.Context, gfs, p, dest)
	if err != nil {
		return fmt.Errorf("restore-file: %w", err)
	}
	fmt.Printf("restored %d files to %s\n", n, dest)
	return nil
}

// restoreTree copies src (file, symlink or directory tree) of gfs to dest,
// keeping modes and modification times (and owners when run as root).
// Files are written sparse: all-zero blocks become holes.
func restoreTree(ctx context.Context, gfs fs.FS, src, dest string) (int, error) {
	count := 0
	type dirTime struct {
		path  string
		guest string
		fi    fs.FileInfo
	}
	var dirs []dirTime
	linked := map[uint64]string{} // guest inode -> restored path
	err := fs.WalkDir(gfs, src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, src), "/")
		target := dest
		if rel != "" {
			target = filepath.Join(dest, filepath.FromSlash(rel))
		}
		fi, err := fs.Lstat(gfs, p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{target, p, fi})
			return nil
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := fs.ReadLink(gfs, p)
			if err != nil {
				return err
			}
			os.Remove(target)
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			// A hard link is restored as a hard link to the first name.
			if a, ok := fi.Sys().(partinfo.Attr); ok && a.Nlink > 1 {
				if first, ok := linked[a.Ino]; ok {
					os.Remove(target)
					if err := os.Link(first, target); err != nil {
						return err
					}
					count++
					return nil
				}
				linked[a.Ino] = target
			}
			if err := restoreFile(gfs, p, target, fi); err != nil {
				return err
			}
		default:
			return nil // devices, fifos and sockets are not restored
		}
		applyMeta(target, fi)
		if err := restoreXattrs(gfs, p, target); err != nil {
			return err
		}
		count++
		return nil
	})
	// Directory metadata last, deepest first, after their content is
	// written (a default ACL set earlier would be inherited by the content).
	for i := len(dirs) - 1; i >= 0; i-- {
		applyMeta(dirs[i].path, dirs[i].fi)
		if xerr := restoreXattrs(gfs, dirs[i].guest, dirs[i].path); xerr != nil && err == nil {
			err = xerr
		}
	}
	return count, err
}

func restoreFile(gfs fs.FS, p, target string, fi fs.FileInfo) error {
	in, err := gfs.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, 64<<10)
	var off int64
	for {
		n, rerr := io.ReadFull(in, buf)
		for b := 0; b < n; b += len(zero) {
			chunk := buf[b:min(b+len(zero), n)]
			if !bytes.Equal(chunk, zero[:len(chunk)]) {
				if _, err := out.WriteAt(chunk, off+int64(b)); err != nil {
					out.Close()
					return err
				}
			}
		}
		off += int64(n)
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			out.Close()
			return fmt.Errorf("read %s: %w", p, rerr)
		}
	}
	if err := out.Truncate(off); err != nil {
		out.Close()
		return err
	}
	if off != fi.Size() {
		out.Close()
		return fmt.Errorf("read %s: got %d bytes, the file has %d", p, off, fi.Size())
	}
	return out.Close()
}

// applyMeta sets mode, owner (as root) and times; failures are not fatal.
func applyMeta(target string, fi fs.FileInfo) {
	if a, ok := fi.Sys().(partinfo.Attr); ok && os.Geteuid() == 0 {
		_ = os.Lchown(target, int(a.Uid), int(a.Gid))
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		mode := fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		_ = os.Chmod(target, mode)
		_ = os.Chtimes(target, fi.ModTime(), fi.ModTime())
	}
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
)

// findCommands are `cairn history` and `cairn search`: which version of
// a guest file is in which point, and where a file is.
func findCommands() []*cli.Command {
	selFlags := []cli.Flag{
		&cli.StringFlag{Name: "vm", Required: true, Usage: "VM name"},
		&cli.StringFlag{Name: "disk", Usage: "only this disk's filesystems (with --part: one partition)"},
		&cli.StringFlag{Name: "part", Usage: "with --disk: partition number (1, p1, ...) or whole"},
		&cli.StringFlag{Name: "volume", Usage: "only this volume across disks: lvm/VG/LV, md/ARRAY, ldm/VOLUME or btrfs/NAME"},
		remoteFlag, limitRateFlag,
		jsonFlag(),
	}
	return []*cli.Command{
		{
			Name:      "history",
			Usage:     "list the distinct versions of a guest file or directory across every recovery point of a VM, and the restore-file command that brings each back",
			ArgsUsage: "PATH",
			Description: "Reads PATH in the guest filesystems of every point (all of them, or the one\n" +
				"--disk/--part or --volume selects) and prints one line per run of points holding\n" +
				"the same version (v1, v2, ... in the order they appeared) or no entry (absent):\n" +
				"a file deleted in one point and back in a later one shows the gap. Two versions\n" +
				"differ when type, mode, owner, size, mtime, symlink target or the SHA-256 of the\n" +
				"bytes differ, so a file rewritten with the same size and mtime is a new version.\n" +
				"Newest first; --oldest-first turns the order. Points and filesystems that cannot\n" +
				"be read are listed as unreadable and the rest is read.",
			Flags:  append([]cli.Flag{&cli.BoolFlag{Name: "oldest-first", Usage: "oldest point first"}}, selFlags...),
			Action: historyAction,
		},
		{
			Name:      "search",
			Usage:     "find files by name in the guest filesystems of a recovery point (--point) or of all of them (--all-points)",
			ArgsUsage: "PATTERN",
			Description: "PATTERN is a glob on the name (* ? [...], quote it from the shell). Every\n" +
				"filesystem of every disk and volume (LVM, MD, LDM, btrfs) is searched unless\n" +
				"--disk/--part or --volume selects one. With --all-points an entry found unchanged\n" +
				"(same size, mtime, mode, owner) in consecutive points is one line with the range of\n" +
				"points; `cairn history` then tells versions apart by content.",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "point", Value: "latest", Usage: "point id, generation number or latest"},
				&cli.BoolFlag{Name: "all-points", Usage: "search every point of the VM"},
				&cli.StringFlag{Name: "path-prefix", Usage: "search only under this guest `DIR`"},
				&cli.StringFlag{Name: "path", Usage: "also require the whole path to match this `GLOB` (e.g. 'home/*/Documents/*')"},
				&cli.BoolFlag{Name: "ignore-case", Aliases: []string{"i"}, Usage: "match PATTERN and --path without regard to case (NTFS, FAT)"},
				&cli.StringFlag{Name: "newer", Usage: "only entries modified after `TIME` (2026-11-30 or RFC 3339)"},
				&cli.StringFlag{Name: "larger", Usage: "only entries bigger than `SIZE` (bytes, or with a 1024-based suffix: 10k, 10M, 2GiB)"},
			}, selFlags...),
			Action: searchAction,
		},
	}
}

// argsError says what a command wants instead of args; a flag among
// them came after the argument, where the flag parser stops.
func argsError(cmd, want string, args []string) error {
	for _, a := range args[min(1, len(args)):] {
		if strings.HasPrefix(a, "-") {
			return fmt.Errorf("%s: %s came after %s: give the flags first (cairn %s [flags] %s)", cmd, a, args[0], cmd, args[0])
		}
	}
	if len(args) > 1 {
		return fmt.Errorf("%s: give %s, got %d: %s (an unquoted glob the shell expanded?)", cmd, want, len(args), strings.Join(args, " "))
	}
	return fmt.Errorf("%s: give %s", cmd, want)
}

var drivePath = regexp.MustCompile(`^[A-Za-z]:[\\/]`)

// windowsPath turns a Windows path as an administrator copies it
// (C:\Users\bob\report.xlsx) into the guest path the readers take
// (/Users/bob/report.xlsx); the drive letter is dropped (every NTFS and
// FAT volume is looked in unless --disk/--volume says which). Other paths
// are left as they are: a backslash is a legal character in a Linux name.
func windowsPath(p string) string {
	if !drivePath.MatchString(p) {
		return p
	}
	return strings.ReplaceAll(p[2:], `\`, "/")
}

// findSelector reads --disk/--part/--volume.
func findSelector(c *cli.Context) (guestfind.Selector, error) {
	sel := guestfind.Selector{Disk: c.String("disk"), Part: c.String("part"), Volume: c.String("volume")}
	if sel.Volume != "" && (sel.Disk != "" || sel.Part != "") {
		return sel, fmt.Errorf("give either --volume or --disk/--part, not both")
	}
	if sel.Part != "" && sel.Disk == "" {
		return sel, fmt.Errorf("--part needs --disk")
	}
	return sel, nil
}

// restoreCommand is the restore-file command line that brings back path
// from point pt of filesystem f.
func restoreCommand(c *cli.Context, vm string, pt blockmap.Point, f guestfind.FS, p string) string {
	args := []string{"cairn"}
	if c.IsSet("repo") {
		args = append(args, "--repo", shellQuote(c.String("repo")))
	}
	args = append(args, "restore-file")
	if r := c.String("remote"); r != "" {
		args = append(args, "--remote", shellQuote(r))
	}
	args = append(args, "--vm", shellQuote(vm), "--point", pt.ID)
	if f.Volume != "" {
		args = append(args, "--volume", shellQuote(f.Volume))
	} else {
		args = append(args, "--disk", shellQuote(f.Disk), "--part", shellQuote(f.Part))
	}
	return strings.Join(append(args, shellQuote(show(p)), "DEST"), " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// pointRange renders a run's points: one id, or first..last (n).
func pointRange(pts []blockmap.Point, newestFirst bool) string {
	if len(pts) == 1 {
		return pts[0].ID
	}
	a, b := pts[0].ID, pts[len(pts)-1].ID
	if newestFirst {
		a, b = b, a
	}
	return fmt.Sprintf("%s..%s (%d)", a, b, len(pts))
}

func pointIDs(pts []blockmap.Point) []string {
	ids := make([]string, len(pts))
	for i, p := range pts {
		ids[i] = p.ID
	}
	return ids
}

// entryJSON is the attributes of a version or a hit in --json.
type entryJSON struct {
	Type   string    `json:"type"`
	Mode   string    `json:"mode"`
	UID    *uint32   `json:"uid,omitempty"`
	GID    *uint32   `json:"gid,omitempty"`
	Size   int64     `json:"size"`
	Mtime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"`
	SHA256 string    `json:"sha256,omitempty"`
}

func entryToJSON(e guestfind.Entry) entryJSON {
	j := entryJSON{Type: e.Kind(), Mode: lsMode(e.Mode), Size: e.Size, Mtime: e.Mtime, Target: e.Target, SHA256: e.SHA256}
	if e.HasOwner {
		uid, gid := e.UID, e.GID
		j.UID, j.GID = &uid, &gid
	}
	return j
}

type pointErrorJSON struct {
	Point      string `json:"point"`
	Filesystem string `json:"filesystem,omitempty"`
	Error      string `json:"error"`
}

func pointErrorsJSON(errs []*guestfind.PointError) []pointErrorJSON {
	out := []pointErrorJSON{}
	for _, e := range errs {
		out = append(out, pointErrorJSON{Point: e.Point, Filesystem: e.FS, Error: e.Err.Error()})
	}
	return out
}

type statsJSON struct {
	Points      int   `json:"points"`
	Read        int   `json:"points_read"`
	Reused      int   `json:"points_unchanged"`
	HashedBytes int64 `json:"hashed_bytes,omitempty"`
}

func toStatsJSON(s guestfind.Stats) statsJSON {
	return statsJSON{Points: s.Points, Read: s.Read, Reused: s.Reused, HashedBytes: s.HashedBytes}
}

type runJSON struct {
	Points  []string `json:"points"` // oldest first
	First   string   `json:"first"`
	Last    string   `json:"last"`
	State   string   `json:"state"` // version, absent or unreadable
	Version int      `json:"version,omitempty"`
	*entryJSON
	Error   string `json:"error,omitempty"`
	Restore string `json:"restore,omitempty"`
}

type fsHistoryJSON struct {
	guestfind.FS
	Versions int       `json:"versions"`
	Runs     []runJSON `json:"runs"`
}

type historyJSON struct {
	VM          string           `json:"vm"`
	Path        string           `json:"path"`
	Order       string           `json:"order"`
	Filesystems []fsHistoryJSON  `json:"filesystems"`
	Errors      []pointErrorJSON `json:"errors"`
	Stats       statsJSON        `json:"stats"`
}

func historyAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return argsError("history", "one PATH (a file or directory in the guest)", c.Args().Slice())
	}
	sel, err := findSelector(c)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	src, _, closeSrc, err := findSource(c)
	if err != nil {
		return err
	}
	defer closeSrc()
	vm := c.String("vm")
	h, err := guestfind.PathHistory(c.Context, src, vm, windowsPath(c.Args().First()), sel)
	var nf *guestfind.NotFoundError
	switch {
	case errors.As(err, &nf):
		printPointErrors(os.Stderr, h.Errors)
		return fmt.Errorf("history: %w; check the path (`cairn search --vm %s --all-points NAME` finds a name anywhere)", err, vm)
	case err != nil:
		return fmt.Errorf("history: %w", err)
	}
	newest := !c.Bool("oldest-first")
	out := historyJSON{VM: vm, Path: show(h.Path), Order: "newest-first", Errors: pointErrorsJSON(h.Errors), Stats: toStatsJSON(h.Stats)}
	if !newest {
		out.Order = "oldest-first"
	}
	for _, fh := range h.Filesystems {
		fj := fsHistoryJSON{FS: fh.FS, Versions: fh.Versions}
		for _, r := range fh.Runs {
			rj := runJSON{Points: pointIDs(r.Points), First: r.Points[0].ID, Last: r.Points[len(r.Points)-1].ID, State: "absent"}
			switch {
			case r.Entry != nil:
				e := entryToJSON(*r.Entry)
				rj.State, rj.Version, rj.entryJSON = "version", r.Version, &e
				rj.Restore = restoreCommand(c, vm, r.Points[len(r.Points)-1], fh.FS, h.Path)
			case r.Err != nil:
				rj.State, rj.Error = "unreadable", r.Err.Err.Error()
			}
			fj.Runs = append(fj.Runs, rj)
		}
		if newest {
			for i, j := 0, len(fj.Runs)-1; i < j; i, j = i+1, j-1 {
				fj.Runs[i], fj.Runs[j] = fj.Runs[j], fj.Runs[i]
			}
		}
		out.Filesystems = append(out.Filesystems, fj)
	}
	if c.Bool("json") {
		return printJSON(out)
	}
	return printHistory(os.Stdout, os.Stderr, out, newest)
}

// printHistory prints each filesystem's runs as a table, then the
// restore-file command of each version (from its newest point).
func printHistory(w, ew io.Writer, h historyJSON, newest bool) error {
	for i, fh := range h.Filesystems {
		if i > 0 {
			fmt.Fprintln(w)
		}
		held, all := 0, 0
		for _, r := range fh.Runs {
			all += len(r.Points)
			if r.State == "version" {
				held += len(r.Points)
			}
		}
		fmt.Fprintf(w, "%s %s: %d version(s) in %d of %d points, %s\n", displayName(fh.Name), displayName(h.Path), fh.Versions, held, all, strings.ReplaceAll(h.Order, "-", " "))
		var table bytes.Buffer
		tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "POINTS\tVERSION\tTYPE\tMODE\tOWNER\tSIZE\tMTIME\tSHA256")
		restore := map[int]string{}
		var order []int
		for _, r := range fh.Runs {
			pts := make([]blockmap.Point, len(r.Points))
			for i, id := range r.Points {
				pts[i] = blockmap.Point{ID: id}
			}
			rng := pointRange(pts, newest)
			switch r.State {
			case "version":
				sum := "-"
				if r.SHA256 != "" {
					sum = r.SHA256[:16]
				}
				size := fmt.Sprint(r.Size)
				if r.Target != "" {
					size += " -> " + displayName(r.Target)
				}
				fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t%s\t%s\t%s\n", rng, r.Version, r.Type, r.Mode, ownerJSON(r.entryJSON), size, r.Mtime.Format("2006-01-02 15:04:05"), sum)
				if _, ok := restore[r.Version]; !ok {
					order = append(order, r.Version)
					restore[r.Version] = r.Restore
				}
			case "absent":
				fmt.Fprintf(tw, "%s\tabsent\t\t\t\t\t\t\n", rng)
			default:
				fmt.Fprintf(tw, "%s\tunreadable\t\t\t\t\t\t\n", rng)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		// absent and unreadable rows keep their empty cells (a shorter
		// row would end tabwriter's column blocks), not their padding.
		for _, l := range strings.SplitAfter(table.String(), "\n") {
			if l != "" {
				fmt.Fprintln(w, strings.TrimRight(l, " \n"))
			}
		}
		fmt.Fprintln(w, "restore a version (DEST: where to put it):")
		for _, v := range order {
			fmt.Fprintf(w, "  v%d: %s\n", v, restore[v])
		}
	}
	for _, e := range h.Errors {
		if e.Filesystem == "" {
			fmt.Fprintf(ew, "point %s: cannot be read: %s\n", e.Point, e.Error)
		} else {
			fmt.Fprintf(ew, "point %s: filesystem %s: cannot be read: %s\n", e.Point, e.Filesystem, e.Error)
		}
	}
	return nil
}

func ownerJSON(e *entryJSON) string {
	if e.UID == nil {
		return "-"
	}
	return fmt.Sprintf("%d:%d", *e.UID, *e.GID)
}

func printPointErrors(w io.Writer, errs []*guestfind.PointError) {
	for _, e := range errs {
		fmt.Fprintln(w, e.Error())
	}
}

type hitJSON struct {
	guestfind.FS
	Path   string   `json:"path"`
	Points []string `json:"points"` // oldest first
	First  string   `json:"first"`
	Last   string   `json:"last"`
	entryJSON
}

type searchJSON struct {
	VM     string           `json:"vm"`
	Points []string         `json:"points_searched"`
	Hits   []hitJSON        `json:"hits"`
	Errors []pointErrorJSON `json:"errors"`
	Stats  statsJSON        `json:"stats"`
}

// parseNewer reads --newer: a date (UTC midnight) or RFC 3339.
func parseNewer(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--newer %q: give a date (2026-11-30) or a time (2026-11-30T08:00:00Z)", s)
}

func searchAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return argsError("search", "one PATTERN (a glob on the name, quoted: '*.xlsx')", c.Args().Slice())
	}
	sel, err := findSelector(c)
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	if c.Bool("all-points") && c.IsSet("point") {
		return fmt.Errorf("search: give either --point or --all-points, not both")
	}
	opts := guestfind.SearchOptions{Pattern: c.Args().First(), PathPattern: strings.TrimPrefix(c.String("path"), "/"),
		IgnoreCase: c.Bool("ignore-case"), Under: windowsPath(c.String("path-prefix")), Select: sel, Larger: -1}
	if s := c.String("newer"); s != "" {
		if opts.Newer, err = parseNewer(s); err != nil {
			return fmt.Errorf("search: %w", err)
		}
	}
	if s := c.String("larger"); s != "" {
		if opts.Larger, err = parseSizeFlag("search", "larger", s, 0, 0); err != nil {
			return err
		}
	}
	src, resolve, closeSrc, err := findSource(c)
	if err != nil {
		return err
	}
	defer closeSrc()
	vm := c.String("vm")
	var pts []blockmap.Point
	if c.Bool("all-points") {
		if pts, err = src.Points(c.Context, vm); err != nil {
			return err
		}
	} else {
		p, err := resolve(c.String("point"))
		if err != nil {
			return err
		}
		pts = []blockmap.Point{p}
	}
	res, err := guestfind.Search(c.Context, src, vm, pts, opts)
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	out := searchJSON{VM: vm, Points: pointIDs(res.Points), Hits: []hitJSON{}, Errors: pointErrorsJSON(res.Errors), Stats: toStatsJSON(res.Stats)}
	for _, h := range res.Hits {
		pts := res.Points[h.From : h.To+1]
		out.Hits = append(out.Hits, hitJSON{FS: h.FS, Path: show(h.Path), Points: pointIDs(pts), First: pts[0].ID,
			Last: pts[len(pts)-1].ID, entryJSON: entryToJSON(h.Entry)})
	}
	if c.Bool("json") {
		return printJSON(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POINTS\tFILESYSTEM\tTYPE\tSIZE\tMTIME\tPATH")
	for _, h := range res.Hits {
		name := displayName(show(h.Path))
		if h.Entry.Target != "" {
			name += " -> " + displayName(h.Entry.Target)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", pointRange(res.Points[h.From:h.To+1], false), h.FS.Name, h.Entry.Kind(), h.Entry.Size,
			h.Entry.Mtime.Format("2006-01-02 15:04:05"), name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range res.Errors {
		fmt.Fprintln(os.Stderr, e.Error())
	}
	if len(res.Hits) == 0 {
		fmt.Fprintf(os.Stderr, "no entry named %s in %d point(s)\n", c.Args().First(), len(res.Points))
	}
	return nil
}

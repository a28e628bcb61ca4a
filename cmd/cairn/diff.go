package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// diffCommand is `cairn diff`: what changed in a VM's guest files
// between two points.
func diffCommand() *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "list what changed in a VM's guest files between two recovery points (added, deleted, content modified, type changed, metadata only), read in place from the points",
		ArgsUsage: "[PATH]",
		Description: "Compares every guest filesystem found in both points (or the one --disk/--part or --volume\n" +
			"selects), limited to PATH when given. One line per changed entry:\n" +
			"  added PATH (type, size)      deleted PATH (type, size)\n" +
			"  modified PATH: content, size 10 B -> 12 B, mtime, ...   (the content differs)\n" +
			"  type PATH: file -> dir       metadata PATH: mode ..., owner ..., mtime, xattrs, acl\n" +
			"Content is compared byte for byte, never guessed from size and mtime; a file whose\n" +
			"extents lie in blocks both points share (ext2/3/4, XFS on a partition or whole disk) is\n" +
			"known equal without a read. --entropy marks modified files whose content went from\n" +
			"low-entropy to encrypted-looking (ENCRYPTED?), the ransomware fingerprint; --summary\n" +
			"counts changes and bytes per kind and per top-level directory and lists those files.\n" +
			"--from defaults to the point before --to, --to to the point after --from; neither\n" +
			"given: the newest point against the one before it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "vm", Required: true, Usage: "VM name"},
			&cli.StringFlag{Name: "from", Usage: "the earlier point: id, generation number or latest"},
			&cli.StringFlag{Name: "to", Usage: "the later point: id, generation number or latest"},
			&cli.StringFlag{Name: "disk", Usage: "only this disk's filesystems (with --part: one partition)"},
			&cli.StringFlag{Name: "part", Usage: "with --disk: partition number (1, p1, ...) or whole"},
			volumeFlag,
			&cli.StringSliceFlag{Name: "exclude", Usage: "skip entries matching `GLOB` (a base name, or with a slash the path from the root, e.g. /var/cache/*); repeatable"},
			&cli.BoolFlag{Name: "entropy", Usage: "measure modified files and mark those that went from low-entropy to encrypted-looking content"},
			&cli.BoolFlag{Name: "summary", Usage: "print counts and bytes per kind and per top-level directory (and the encrypted-looking files) instead of every change"},
			remoteFlag, limitRateFlag,
			jsonFlag(),
		},
		Action: diffAction,
	}
}

// diffPoints resolves --from and --to.
func diffPoints(c *cli.Context, src guestfind.Source, resolve func(string) (blockmap.Point, error)) (from, to blockmap.Point, err error) {
	vm := c.String("vm")
	fromRef, toRef := c.String("from"), c.String("to")
	if fromRef == "" && toRef == "" {
		toRef = "latest"
	}
	pts, err := src.Points(c.Context, vm)
	if err != nil {
		return from, to, err
	}
	slices.SortFunc(pts, func(a, b blockmap.Point) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return int(a.Gen) - int(b.Gen)
	})
	at := func(p blockmap.Point) int {
		return slices.IndexFunc(pts, func(q blockmap.Point) bool { return q.ID == p.ID })
	}
	if fromRef != "" {
		if from, err = resolve(fromRef); err != nil {
			return from, to, fmt.Errorf("--from: %w", err)
		}
	}
	if toRef != "" {
		if to, err = resolve(toRef); err != nil {
			return from, to, fmt.Errorf("--to: %w", err)
		}
	}
	switch {
	case fromRef == "":
		i := at(to)
		if i <= 0 {
			return from, to, fmt.Errorf("diff: %s is the oldest point of %s, there is none before it to compare with: give --from (`cairn points --vm %s` lists them)", to.ID, vm, vm)
		}
		from = pts[i-1]
	case toRef == "":
		i := at(from)
		if i < 0 || i == len(pts)-1 {
			return from, to, fmt.Errorf("diff: %s is the newest point of %s, there is none after it to compare with: give --to (`cairn points --vm %s` lists them)", from.ID, vm, vm)
		}
		to = pts[i+1]
	}
	return from, to, nil
}

func diffAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("diff: give at most one PATH (the subtree to compare), got %d: %s", c.NArg(), strings.Join(c.Args().Slice(), " "))
	}
	sel, err := findSelector(c)
	if err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	src, resolve, closeSrc, err := findSource(c)
	if err != nil {
		return err
	}
	defer closeSrc()
	from, to, err := diffPoints(c, src, resolve)
	if err != nil {
		return err
	}
	opts := guestfind.DiffOptions{Selector: sel, Path: windowsPath(c.Args().First()), Exclude: c.StringSlice("exclude"),
		Entropy: c.Bool("entropy") || c.Bool("summary")}
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer w.Flush()
	out := newDiffPrinter(w, from, to, c.Bool("json"), c.Bool("summary"))
	res, err := guestfind.Diff(c.Context, src, from, to, opts, out.change)
	if err != nil {
		err = fmt.Errorf("diff: %w", err)
		if out.json && out.started {
			// The document is begun: end it with the error, so that
			// stdout stays one JSON document (jsonerr.go).
			msg, _ := json.Marshal(err.Error())
			if !out.summ {
				fmt.Fprint(w, "\n]")
			}
			fmt.Fprintf(w, ",\"error\":%s}\n", msg)
			w.Flush()
			return jsonShown{err}
		}
		w.Flush()
		return err
	}
	return out.finish(res)
}

// diffPrinter writes a diff's changes as they come: text lines, or one
// JSON document whose "changes" array is streamed.
type diffPrinter struct {
	w          io.Writer
	from, to   blockmap.Point
	json, summ bool
	sum        *guestfind.DiffSummary
	fs         string // filesystem of the last change printed
	n          int
	started    bool
}

func newDiffPrinter(w io.Writer, from, to blockmap.Point, asJSON, summary bool) *diffPrinter {
	return &diffPrinter{w: w, from: from, to: to, json: asJSON, summ: summary, sum: guestfind.NewDiffSummary()}
}

// start writes the head, once: at the first change or at the end, so
// that a diff refused before it began prints only its error.
func (p *diffPrinter) start() {
	if p.started {
		return
	}
	p.started = true
	if p.json {
		head, _ := json.Marshal(map[string]string{"vm": p.from.VM, "from": p.from.ID, "to": p.to.ID})
		fmt.Fprintf(p.w, "%s", head[:len(head)-1])
		if !p.summ {
			fmt.Fprint(p.w, `,"changes":[`)
		}
	} else {
		fmt.Fprintf(p.w, "# %s: %s -> %s\n", p.from.VM, p.from.ID, p.to.ID)
	}
}

func (p *diffPrinter) change(c guestfind.Change) error {
	p.start()
	p.sum.Add(c)
	p.n++
	if p.summ {
		return nil
	}
	if p.json {
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if p.n > 1 {
			p.w.Write([]byte{','})
		}
		_, err = fmt.Fprintf(p.w, "\n%s", b)
		return err
	}
	if c.FS != p.fs {
		p.fs = c.FS
		fmt.Fprintf(p.w, "== %s\n", c.FS)
	}
	_, err := fmt.Fprintln(p.w, diffLine(c))
	return err
}

// diffLine is one change as the text listing shows it.
func diffLine(c guestfind.Change) string {
	name := displayName(c.Path)
	if (c.New != nil && c.New.Type == "dir" || c.New == nil && c.Old != nil && c.Old.Type == "dir") && name != "/" {
		name += "/"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %s", c.Kind, name)
	desc := func(s *guestfind.Side) string {
		d := s.Type
		if s.Type == "file" {
			d += ", " + bytesize.IEC(s.Size)
		}
		if s.Target != "" {
			d += " -> " + displayName(s.Target)
		}
		if s.HardLinkTo != "" {
			d += ", hard link of " + displayName(s.HardLinkTo)
		}
		return d
	}
	switch c.Kind {
	case guestfind.Added:
		fmt.Fprintf(&b, " (%s)", desc(c.New))
	case guestfind.Deleted:
		fmt.Fprintf(&b, " (%s)", desc(c.Old))
	case guestfind.TypeChanged:
		fmt.Fprintf(&b, ": %s -> %s", desc(c.Old), desc(c.New))
	default:
		var parts []string
		for _, f := range c.Fields {
			parts = append(parts, diffField(f, c.Old, c.New))
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, ": %s", strings.Join(parts, ", "))
		}
	}
	if c.Encrypted {
		fmt.Fprintf(&b, "  ENCRYPTED? (entropy %.1f -> %.1f bits/byte)", *c.Old.Entropy, *c.New.Entropy)
	}
	if c.Error != "" {
		fmt.Fprintf(&b, "  (could not compare: %s)", c.Error)
	}
	return b.String()
}

func diffField(f string, a, b *guestfind.Side) string {
	if a == nil || b == nil {
		return f
	}
	switch f {
	case guestfind.FieldSize:
		return fmt.Sprintf("size %d -> %d", a.Size, b.Size)
	case guestfind.FieldMode:
		return fmt.Sprintf("mode %s -> %s", a.Mode, b.Mode)
	case guestfind.FieldOwner:
		if a.UID != nil && b.UID != nil {
			return fmt.Sprintf("owner %d:%d -> %d:%d", *a.UID, *a.GID, *b.UID, *b.GID)
		}
	case guestfind.FieldMtime:
		layout := "2006-01-02 15:04:05"
		if a.Mtime.Truncate(time.Second).Equal(b.Mtime.Truncate(time.Second)) {
			layout += ".999999999" // the same second: show what differs
		}
		return fmt.Sprintf("mtime %s -> %s", a.Mtime.Format(layout), b.Mtime.Format(layout))
	case guestfind.FieldTarget:
		return fmt.Sprintf("target %s -> %s", displayName(a.Target), displayName(b.Target))
	}
	return f
}

func (p *diffPrinter) finish(res guestfind.DiffResult) error {
	p.start()
	if p.json {
		tail := map[string]any{"filesystems": res.Filesystems, "stats": res.Stats}
		if p.summ {
			tail["summary"] = diffSummaryJSON(p.sum)
		}
		b, err := json.Marshal(tail)
		if err != nil {
			return err
		}
		if !p.summ {
			fmt.Fprint(p.w, "\n]")
		}
		_, err = fmt.Fprintf(p.w, ",%s\n", b[1:])
		return err
	}
	for _, f := range res.Filesystems {
		switch f.State {
		case guestfind.Added:
			fmt.Fprintf(p.w, "== %s: only in %s (not compared)\n", f.Name, p.to.ID)
		case guestfind.Deleted:
			fmt.Fprintf(p.w, "== %s: only in %s (not compared)\n", f.Name, p.from.ID)
		case "unreadable":
			fmt.Fprintf(p.w, "== %s: not compared: %s\n", f.Name, f.Error)
		}
	}
	if p.summ {
		printDiffSummary(p.w, p.sum)
	}
	st := res.Stats
	_, err := fmt.Fprintf(p.w, "# %d changes; %d entries looked at, %d files of equal size compared: %d known equal from shared blocks, %d read (%s)\n",
		p.n, st.Entries, st.FilesCompared, st.SameBlocks, st.FilesRead, bytesize.IEC(st.BytesRead))
	return err
}

var diffKinds = []string{guestfind.Added, guestfind.Deleted, guestfind.Modified, guestfind.TypeChanged, guestfind.Metadata}

type diffSummaryOut struct {
	Kinds     map[string]guestfind.DiffCount `json:"kinds"`
	Dirs      []guestfind.DiffDir            `json:"dirs"`
	Encrypted []string                       `json:"encrypted"`
}

func diffSummaryJSON(s *guestfind.DiffSummary) diffSummaryOut {
	enc := s.Encrypted
	if enc == nil {
		enc = []string{}
	}
	return diffSummaryOut{Kinds: s.Kinds, Dirs: s.Sorted(), Encrypted: enc}
}

func printDiffSummary(w io.Writer, s *guestfind.DiffSummary) {
	cell := func(m map[string]guestfind.DiffCount, k string) string {
		c := m[k]
		if c.Count == 0 {
			return "-"
		}
		if c.Bytes == 0 {
			return fmt.Sprint(c.Count)
		}
		return fmt.Sprintf("%d (%s)", c.Count, bytesize.IEC(c.Bytes))
	}
	fmt.Fprintf(w, "%-24s", "")
	for _, k := range diffKinds {
		fmt.Fprintf(w, " %-16s", k)
	}
	fmt.Fprintln(w)
	row := func(name string, m map[string]guestfind.DiffCount) {
		fmt.Fprintf(w, "%-24s", name)
		for _, k := range diffKinds {
			fmt.Fprintf(w, " %-16s", cell(m, k))
		}
		fmt.Fprintln(w)
	}
	row("total", s.Kinds)
	for _, d := range s.Sorted() {
		row(d.FS+":"+d.Dir, d.Kinds)
	}
	fmt.Fprintf(w, "%d modified files went from low-entropy to encrypted-looking content\n", len(s.Encrypted))
	for _, e := range s.Encrypted {
		fmt.Fprintf(w, "  ENCRYPTED? %s\n", displayName(e))
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// table is a tabwriter over a buffer of w: a tabwriter writes every cell
// and its padding to w on its own, and a listing of 12,000 points or
// jobs made 200,000 write calls to the terminal.
type table struct {
	*tabwriter.Writer
	buf *bufio.Writer
}

func newTable(w io.Writer) *table {
	buf := bufio.NewWriterSize(w, 64<<10)
	return &table{Writer: tabwriter.NewWriter(buf, 0, 4, 2, ' ', 0), buf: buf}
}

// Flush writes the table out.
func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	return t.buf.Flush()
}

// printPointsTable prints the points of cat as cairn points lists them.
func printPointsTable(w io.Writer, repoDir string, cat []blockmap.VMSummary) error {
	tw := newTable(w)
	acks := repoAcks(repoDir)
	fmt.Fprintln(tw, "VM\tPOINT\tGEN\tTIME (UTC)\tCONSISTENCY\tDISKS\tSTORED\tBOOT\tCHANGES")
	for _, v := range cat {
		// By time, as latest and retention go (a repository rebuilt by
		// pull may hold an older point under a higher generation).
		pts := slices.Clone(v.Points)
		slices.SortStableFunc(pts, func(a, b blockmap.Point) int { return a.Time.Compare(b.Time) })
		for _, p := range pts {
			var disks []string
			for _, d := range p.Disks {
				disks = append(disks, fmt.Sprintf("%s (%s)", d.Name, bytesize.IEC(d.Size)))
			}
			disks = append(disks, skippedColumn(p)...)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, p.ID, p.Gen, p.Time.UTC().Format("2006-01-02 15:04:05"),
				p.Consistency, strings.Join(disks, ", "), bytesize.IEC(p.StoredBytes()), bootColumn(repoDir, v.Name, p.ID), changesColumn(p, acks))
		}
	}
	return tw.Flush()
}

// printPointsJSON prints `cairn points --json` one VM at a time, as
// printJSON would print the whole document at once: a site's 12,000
// points made a 40 MiB document (and two copies of it) in memory.
func printPointsJSON(w io.Writer, repoDir string, cat []blockmap.VMSummary, totals pointsTotals) error {
	buf := bufio.NewWriterSize(w, 64<<10)
	buf.WriteString("{\n  \"vms\": [")
	for i, v := range cat {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := json.MarshalIndent(withBootVerdicts(repoDir, []blockmap.VMSummary{v})[0], "    ", "  ")
		if err != nil {
			return err
		}
		buf.WriteString("\n    ")
		buf.Write(b)
	}
	if len(cat) > 0 {
		buf.WriteString("\n  ")
	}
	b, err := json.MarshalIndent(totals, "  ", "  ")
	if err != nil {
		return err
	}
	buf.WriteString("],\n  \"totals\": ")
	buf.Write(b)
	buf.WriteString("\n}\n")
	return buf.Flush()
}

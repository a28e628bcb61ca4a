package main

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap"
)

// pointsAckCommand is `cairn points ack`: a suspicious point is a false
// alarm (backupd/anomaly).
func pointsAckCommand() *cli.Command {
	return &cli.Command{
		Name:  "ack",
		Usage: "acknowledge a point flagged for suspicious changes as a false alarm (retention stops keeping the clean point for it)",
		Description: "A point whose changed blocks look encrypted far more than the VM's usual is flagged suspicious\n" +
			"(the CHANGES column of cairn points). While a VM has a flagged point, prune and serve's retention\n" +
			"keep its last clean point. ack records (in the repository, with who and when) that the flag is a\n" +
			"false alarm: the point then counts as clean, in the baseline and for retention (docs/backup.md).",
		Flags: []cli.Flag{
			vmFlag(),
			&cli.StringFlag{Name: "point", Required: true, Usage: "point id or generation number of the flagged point"},
			&cli.StringFlag{Name: "note", Usage: "why it is a false alarm (kept with the acknowledgement)"},
			jsonFlag(),
		},
		Action: pointsAckAction,
	}
}

func pointsAckAction(c *cli.Context) error {
	repo, p, err := openPoint(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	v, ok := anomaly.ReadVerdict(p)
	if !ok || v.Status != anomaly.Suspicious {
		status := "no verdict (backed up before cairn judged changes, or with judging disabled)"
		if ok {
			status = v.Status
		}
		return fmt.Errorf("point %s of %s is not flagged suspicious (%s): there is nothing to acknowledge", p.ID, p.VM, status)
	}
	by := "unknown"
	if u, err := user.Current(); err == nil {
		by = u.Username
	}
	a := anomaly.Ack{VM: p.VM, Point: p.ID, By: by, Note: c.String("note")}
	if err := anomaly.Acknowledge(repo.Dir(), a); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(a)
	}
	fmt.Printf("acknowledged %s %s as a false alarm (%s)\n", p.VM, p.ID, v.Reason)
	return nil
}

// changesColumn is the CHANGES column of `cairn points`: the point's
// suspicious-change verdict, "-" when it has none.
func changesColumn(p blockmap.Point, acks anomaly.Acks) string {
	v, ok := anomaly.ReadVerdict(p)
	switch {
	case !ok:
		return "-"
	case v.Status == anomaly.Suspicious && acks.Acked(p.VM, p.ID):
		return "suspicious (acked)"
	case v.Status == anomaly.Suspicious:
		return "SUSPICIOUS"
	}
	return v.Status
}

// printSuspicious tells, under the points table, why each unacknowledged
// suspicious point was flagged and which point retention keeps clean.
func printSuspicious(w io.Writer, cat []blockmap.VMSummary, acks anomaly.Acks) {
	for _, v := range cat {
		pts := slices.Clone(v.Points)
		slices.SortStableFunc(pts, func(a, b blockmap.Point) int { return a.Time.Compare(b.Time) })
		for _, p := range pts {
			if !anomaly.Flagged(p, acks) {
				continue
			}
			vd, _ := anomaly.ReadVerdict(p)
			fmt.Fprintf(w, "SUSPICIOUS %s %s: %s\n", v.Name, p.ID, vd.Reason)
		}
		if clean, first, ok := anomaly.LastClean(v.Points, acks); ok {
			fmt.Fprintf(w, "  last clean point of %s: %s (kept by prune and retention); a false alarm: cairn points ack --vm %s --point %s\n", v.Name, clean.ID, v.Name, first.ID)
		}
	}
}

// repoAcks reads the repository's acknowledgements; a file that cannot be
// read is warned about and counts as none.
func repoAcks(dir string) anomaly.Acks {
	acks, err := anomaly.LoadAcks(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn: warning: %v\n", err)
		return anomaly.Acks{}
	}
	return acks
}

// printProtected lists the points a prune kept for a suspicious change.
func printProtected(res *blockmap.PruneResult) {
	for _, p := range res.Protected {
		fmt.Printf("kept %s %s: %s\n", p.VM, p.Point, p.Reason)
	}
}

// anomalyFlags are backup's and import's thresholds of the
// suspicious-change verdict (the rest come from cairn.yaml's anomaly:
// block under serve; docs/backup.md).
func anomalyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "suspicious-min-bytes", Usage: "flag a point only when at least `SIZE` of its changes look encrypted (default 64MiB)"},
		&cli.BoolFlag{Name: "no-suspicious-check", Usage: "do not judge the new point's changes (no verdict is kept)"},
	}
}

// anomalyThresholds reads anomalyFlags.
func anomalyThresholds(c *cli.Context, command string) (anomaly.Thresholds, error) {
	t := anomaly.Thresholds{Disabled: c.Bool("no-suspicious-check")}
	if s := c.String("suspicious-min-bytes"); s != "" {
		n, err := parseSizeFlag(command, "suspicious-min-bytes", s, 1, 0)
		if err != nil {
			return t, err
		}
		t.MinBytes = n
	}
	return t, nil
}

// importThresholds are import's thresholds: those of --config's job
// without vcenter that selects --vm (docs/serve.md), with anomalyFlags
// over them.
func importThresholds(c *cli.Context) (anomaly.Thresholds, error) {
	flags, err := anomalyThresholds(c, "import")
	if err != nil || c.String("config") == "" {
		return flags, err
	}
	cfg, err := serve.LoadConfig(c.String("config"))
	if err != nil {
		return flags, fmt.Errorf("import: --config: %w", err)
	}
	t, _, ok := cfg.ImportThresholds(c.String("vm"))
	if !ok {
		return flags, fmt.Errorf("import: --config %s has no job without vcenter whose vms: name %q: add the VM to one (its anomaly: block gives the thresholds), or drop --config", c.String("config"), c.String("vm"))
	}
	t.Disabled = t.Disabled || flags.Disabled
	if flags.MinBytes > 0 {
		t.MinBytes = flags.MinBytes
	}
	return t, nil
}

// warnSuspicious tells on stderr that a new point was flagged.
func warnSuspicious(p blockmap.Point) {
	if v, ok := anomaly.ReadVerdict(p); ok && v.Status == anomaly.Suspicious {
		fmt.Fprintf(os.Stderr, "cairn: warning: %s %s has suspicious changes: %s (retention keeps the last clean point; a false alarm: cairn points ack --vm %s --point %s)\n",
			p.VM, p.ID, v.Reason, p.VM, p.ID)
	}
}

// printSuspiciousVMs tells, under status's VM table, which VMs have
// unacknowledged suspicious points and their last clean point.
func printSuspiciousVMs(w io.Writer, vms []serve.VMStatus) {
	for _, v := range vms {
		if len(v.Suspicious) == 0 {
			continue
		}
		clean := "none before it"
		if v.LastClean != "" {
			clean = v.LastClean + " (kept by retention)"
		}
		fmt.Fprintf(w, "%s: SUSPICIOUS changes in %s; last clean point %s; see cairn points --vm %s\n", v.Name, strings.Join(v.Suspicious, ", "), clean, v.Name)
	}
}

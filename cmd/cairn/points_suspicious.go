package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// suspiciousVM is one VM of `cairn points --suspicious`: its
// unacknowledged suspicious points and the point to restore from.
type suspiciousVM struct {
	VM         string            `json:"vm"`
	Suspicious []suspiciousPoint `json:"suspicious"`
	// LastClean is the newest point before the first suspicious one that
	// is not itself flagged (retention keeps it); absent when there is none.
	LastClean *suspiciousClean `json:"last_clean,omitempty"`
	// Acknowledge is the command that declares the first suspicious point
	// a false alarm.
	Acknowledge string `json:"acknowledge"`
}

type suspiciousPoint struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
}

type suspiciousClean struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
}

// suspiciousReport lists, VM by VM (catalog order), every unacknowledged
// suspicious point and the VM's last clean point; VMs without any are
// left out.
func suspiciousReport(cat []blockmap.VMSummary, acks anomaly.Acks) []suspiciousVM {
	out := []suspiciousVM{}
	for _, v := range cat {
		var sv suspiciousVM
		for _, p := range v.Points {
			if !anomaly.Flagged(p, acks) {
				continue
			}
			verdict, _ := anomaly.ReadVerdict(p)
			sv.Suspicious = append(sv.Suspicious, suspiciousPoint{ID: p.ID, Time: p.Time.UTC(), Reason: verdict.Reason})
		}
		if len(sv.Suspicious) == 0 {
			continue
		}
		sv.VM = v.Name
		first := sv.Suspicious[0].ID
		if clean, f, ok := anomaly.LastClean(v.Points, acks); ok {
			sv.LastClean = &suspiciousClean{ID: clean.ID, Time: clean.Time.UTC()}
			first = f.ID
		}
		sv.Acknowledge = fmt.Sprintf("cairn points ack --vm %s --point %s", v.Name, first)
		out = append(out, sv)
	}
	return out
}

// printSuspiciousReport writes the report as a table, one line per
// suspicious point, and what to do.
func printSuspiciousReport(w io.Writer, rep []suspiciousVM) error {
	if len(rep) == 0 {
		_, err := fmt.Fprintln(w, "no unacknowledged suspicious points")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tSUSPICIOUS POINT\tLAST CLEAN POINT\tREASON")
	for _, v := range rep {
		clean := "none before it"
		if v.LastClean != nil {
			clean = v.LastClean.ID
		}
		for _, p := range v.Suspicious {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.VM, p.ID, clean, p.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d VMs with suspicious changes: restore from the last clean point (retention keeps it); a false alarm: cairn points ack --vm VM --point POINT\n", len(rep))
	return nil
}

// pointsSuspiciousAction is `cairn points --suspicious [--vm VM]
// [--remote NAME] [--json]`: with --remote, the remote's points as their
// manifests judge them, with the local acknowledgements.
func pointsSuspiciousAction(c *cli.Context, w io.Writer) error {
	if c.String("remote") != "" {
		return withRemote(c, func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
			pts, _, err := remotePointsOf(c, rem, rc, c.String("vm"))
			if err != nil {
				return err
			}
			var cat []blockmap.VMSummary
			for _, p := range pts { // by VM, then time
				if len(cat) == 0 || cat[len(cat)-1].Name != p.VM {
					cat = append(cat, blockmap.VMSummary{Name: p.VM})
				}
				cat[len(cat)-1].Points = append(cat[len(cat)-1].Points, p)
			}
			return writeSuspicious(c, w, suspiciousReport(cat, repoAcks(repo.Dir())))
		})
	}
	repo, cat, err := openPointsOf(c, c.String("vm"))
	if err != nil {
		return err
	}
	defer repo.Close()
	return writeSuspicious(c, w, suspiciousReport(cat, repoAcks(repo.Dir())))
}

func writeSuspicious(c *cli.Context, w io.Writer, rep []suspiciousVM) error {
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printSuspiciousReport(w, rep)
}

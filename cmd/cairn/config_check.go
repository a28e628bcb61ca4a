package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/schedule"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap"
)

// configCheckCommand is `cairn config check`: the checks `cairn serve`
// makes at start (and on SIGHUP), without starting anything, and when
// each job would run next, in the config's time zone.
func configCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a cairn.yaml as cairn serve would (without starting it) and show each job's next runs",
		ArgsUsage: "FILE",
		Description: "Reads FILE (or --config FILE) as cairn serve does at start and on SIGHUP:\n" +
			"the YAML and every key, the repository, each job's remote and its vCenter's\n" +
			"credentials file. It prints the jobs with their next three runs in the config's\n" +
			"timezone and exits 1, with the line and the reason, when serve would refuse it.\n" +
			"It logs in to no vCenter (cairn serve does at start; see cairn status).",
		Flags: []cli.Flag{&cli.StringFlag{Name: "config", Usage: "`FILE` cairn.yaml"}},
		Action: func(c *cli.Context) error {
			file := c.String("config")
			if file == "" {
				file = c.Args().First()
			}
			if file == "" || c.NArg() > 1 {
				return fmt.Errorf("give the file: cairn config check /etc/cairn/cairn.yaml")
			}
			cfg, err := serve.LoadConfig(file)
			if err != nil {
				return err
			}
			if err := checkServeRemotes(cfg); err != nil {
				return err
			}
			if err := checkServeCredentials(cfg); err != nil {
				return err
			}
			// cairn.json marks a repository (blockmap.Open), which a
			// running serve holds open: only its presence is checked.
			if _, err := os.Stat(filepath.Join(cfg.Repository, "cairn.json")); err != nil {
				return fmt.Errorf("repository %s: %w", cfg.Repository, &blockmap.RepoMissingError{Dir: cfg.Repository})
			}
			printConfigCheck(c.App.Writer, file, cfg, time.Now())
			return nil
		},
	}
}

// printConfigCheck prints what cfg runs and when.
func printConfigCheck(w io.Writer, file string, cfg *serve.Config, now time.Time) {
	zone := cfg.Location.String()
	if cfg.Location == time.Local {
		name, _ := now.Zone()
		zone = name + " (the machine's zone)"
	}
	fmt.Fprintf(w, "%s: valid (repository %s, %d vCenter(s), %d job(s)); cron schedules in %s\n", file, cfg.Repository, len(cfg.VCenters), len(cfg.Jobs), zone)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tVCENTER\tSCHEDULE\tNEXT RUNS")
	for _, j := range cfg.Jobs {
		sched, next := "-", "- (replicates or boot-checks on its own schedules)"
		switch {
		case j.Schedule != nil:
			sched, next = j.Schedule.String(), nextRuns(j.Schedule, true, now, cfg.Location)
		case j.Replicate != nil && j.Replicate.Schedule != nil: // as cairn status shows it
			sched, next = "replicate "+j.Replicate.Schedule.String(), nextRuns(j.Replicate.Schedule, true, now, cfg.Location)
		case j.BootCheck != nil && j.BootCheck.Schedule != nil:
			sched, next = "boot-check "+j.BootCheck.Schedule.String(), nextRuns(j.BootCheck.Schedule, true, now, cfg.Location)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", j.Name, dash(j.VCenter), sched, next)
	}
	if cfg.Verify != nil {
		fmt.Fprintf(tw, "(repository verify)\t-\t%s\t%s\n", cfg.Verify.String(), nextRuns(cfg.Verify, false, now, cfg.Location))
	}
	tw.Flush()
}

// nextRuns says when sc runs after a start at now: an interval at start
// (jobs) or one interval after it (verify), then every interval; a cron
// expression its next three times in loc.
func nextRuns(sc schedule.Schedule, atStart bool, now time.Time, loc *time.Location) string {
	if sc.RunAtStart() {
		if atStart {
			return "at start, then every " + sc.Next(now).Sub(now).String()
		}
		return "every " + sc.Next(now).Sub(now).String() + " from start"
	}
	var out []string
	t := now
	for range 3 {
		t = sc.Next(t)
		out = append(out, t.In(loc).Format("Mon 2006-01-02 15:04 MST"))
	}
	return strings.Join(out, ", ")
}

package main

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// startRemoteJob records a replicate or pull of --remote in the job log
// of --repo (cairn jobs) and returns what records its end. Nothing is
// recorded when --repo is not a repository (opening it fails with its
// own error).
func startRemoteJob(c *cli.Context, kind string) func(err error, fill func(*backupd.JobRecord)) {
	dir := c.String("repo")
	if _, err := os.Stat(filepath.Join(dir, "cairn.json")); dir == "" || err != nil {
		return func(error, func(*backupd.JobRecord)) {}
	}
	rec := backupd.JobRecord{Kind: kind, Remote: c.String("remote")}
	rec.SetVMs(c.StringSlice("vm"))
	end := backupd.StartJob(dir, rec)
	return func(err error, fill func(*backupd.JobRecord)) {
		end(backupd.Cancelled(c.Context, err), fill) // Ctrl-C, SIGTERM: cancelled, not failed
	}
}

// pointVMs are the VMs of pts, sorted, each once.
func pointVMs(pts []blockmap.Point) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range pts {
		if !seen[p.VM] {
			seen[p.VM] = true
			out = append(out, p.VM)
		}
	}
	sort.Strings(out)
	return out
}

// replicateRecord fills a replicate job's record from what the run did
// (st may be nil: it failed before copying anything).
func replicateRecord(r *backupd.JobRecord, pts []blockmap.Point, st *remote.ReplicateStats) {
	if pts != nil {
		r.SetVMs(pointVMs(pts))
	}
	if st != nil {
		r.Points, r.PointsPresent = len(st.Replicated), len(st.Present)
		r.BytesRead, r.BytesUploaded = st.BytesRead, st.BytesUploaded
	}
}

// pullProgress draws one progress bar per disk of a pulled point, on
// stderr when it is a terminal (as import does).
func pullProgress(vm, disk string, total int64) (func(int64), func()) {
	bar := newProgressBar(vm+"/"+disk, total)
	return bar.Add, bar.Finish
}

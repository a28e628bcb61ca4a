package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestServerJobsShowOffsiteRuns: cairn jobs while cairn serve runs lists
// the server's backup runs and then the replicate runs and pulls of the
// repository's job log (a failed nightly replication with its error),
// not the backups again.
func TestServerJobsShowOffsiteRuns(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	rep := backupd.JobRecord{ID: "r1", Kind: backupd.JobReplicate, Remote: "offsite", ServeJob: "nightly", Start: t0, End: t0.Add(time.Minute), State: backupd.JobFailed, Error: "put cairn/packs/x: connection refused"}
	rep.SetVMs([]string{"web", "db"})
	pull := backupd.JobRecord{ID: "p1", Kind: backupd.JobPull, Remote: "offsite", VM: "web", VMs: []string{"web"}, Start: t0, End: t0.Add(time.Minute), State: backupd.JobOK, Points: 2, BytesDownloaded: 3 << 20, BytesWritten: 3 << 20}
	jr := serve.JobsResponse{
		Runs:    []serve.RunRecord{{ID: "b1", Job: "nightly", VM: "web", State: "ok", Start: t0}},
		History: []backupd.JobRecord{{ID: "b1", Kind: backupd.JobBackup, VM: "web", Start: t0, State: backupd.JobOK}, rep, pull},
	}
	var b strings.Builder
	if err := printServerJobs(&b, "http://127.0.0.1:8080", jr, 0); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"runs of cairn serve", "replications and pulls", "db, web (replicate to offsite)", "connection refused", "web (pull from offsite)", "2 points copied, 0 there", "3.0 MiB down"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "\nb1 ") != 1 {
		t.Errorf("the backup is listed twice:\n%s", out)
	}
	b.Reset()
	jr.History = jr.History[:1]
	if err := printServerJobs(&b, "http://127.0.0.1:8080", jr, 0); err != nil || strings.Contains(b.String(), "replications and pulls") {
		t.Errorf("without offsite runs: %v\n%s", err, b.String())
	}
}

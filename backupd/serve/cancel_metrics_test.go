package serve

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestStoppingServerNoFailureMetric: a run a stopping server aborts is
// recorded (state cancelled, "server stopping") but is not counted in
// cairn_job_failures_total, as it is not notified as a failure: an alert
// on that counter fired at every restart during a backup window.
func TestStoppingServerNoFailureMetric(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	job := Job{Name: "nightly", VCenter: "vc", VMs: []string{"*"}, Schedule: mustSchedule(t, "1h"), Parallel: 1}
	cfg := &Config{Repository: repo, Listen: "127.0.0.1:0", VCenters: []VCenter{{Name: "vc", URL: "https://127.0.0.1:1/sdk", Insecure: true}}, Jobs: []Job{job}}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the server stops as the run begins
	s.runJob(ctx, cfg, job, nil, "schedule")
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cairn_job_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if n := m.GetCounter().GetValue(); n != 0 {
				t.Errorf("cairn_job_failures_total = %v after a run aborted by a stopping server, want 0", n)
			}
		}
	}
	var aborted bool
	for _, r := range s.Runs() {
		aborted = aborted || r.Job == "nightly" && !r.End.IsZero() && r.Error != ""
	}
	if !aborted {
		t.Errorf("the aborted run was not recorded: %+v", s.Runs())
	}
}

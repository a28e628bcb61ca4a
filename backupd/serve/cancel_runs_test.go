package serve

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestStoppingServerRunsCancelled: a run a stopping server aborts is
// cancelled in serve's run records (GET /api/v1/jobs, cairn status,
// cairn trigger --wait), as in the job log, not "failed: server
// stopping".
func TestStoppingServerRunsCancelled(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	job := Job{Name: "nightly", VCenter: "vc", VMs: []string{"web-1"}, Schedule: mustSchedule(t, "1h"), Parallel: 1}
	cfg := &Config{Repository: repo, Listen: "127.0.0.1:0", VCenters: []VCenter{{Name: "vc", URL: "https://127.0.0.1:1/sdk", Insecure: true}}, Jobs: []Job{job}}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if s.repo, err = blockmap.Open(context.Background(), repo, blockmap.Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.repo.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the server stops as the runs begin
	s.runJob(ctx, cfg, job, []*RunRecord{s.newRun(job.Name, "web-1", "api")}, "api")
	// A run whose vCenter is unreachable while the server runs still fails.
	s.runJob(context.Background(), cfg, job, []*RunRecord{s.newRun(job.Name, "web-2", "api")}, "api")

	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/jobs", nil))
	var jr JobsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &jr); err != nil {
		t.Fatalf("GET /api/v1/jobs: %v: %s", err, rec.Body)
	}
	states := map[string]RunRecord{}
	for _, r := range jr.Runs {
		states[r.VM] = r
	}
	if r := states["web-1"]; r.State != StateCancelled || r.Error == "" || r.End.IsZero() {
		t.Errorf("run aborted by a stopping server: %+v, want state %s", r, StateCancelled)
	}
	if r := states["web-2"]; r.State != StateFailed {
		t.Errorf("run with an unreachable vCenter: %+v, want state %s", r, StateFailed)
	}
}

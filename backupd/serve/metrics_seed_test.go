package serve

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestServeLastSuccessAfterRestart: a server started on a repository
// with points exports cairn_last_success_timestamp_seconds of each VM at
// once (its newest point's commit time), so an alert on the age of the
// last backup keeps working across a restart.
func TestServeLastSuccessAfterRestart(t *testing.T) {
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := importRaw(t, repo, "web-1", 1)
	repo.Close()
	cfg, err := ParseConfig("cairn.yaml", []byte("repository: "+repoDir+"\nlisten: 127.0.0.1:0\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := runTestServer(t, repoDir, cfg, nil)
	if got, want := a.metric(t, "cairn_last_success_timestamp_seconds"), float64(p.Committed.Unix()); got != want {
		t.Errorf("cairn_last_success_timestamp_seconds after start: %v, want %v (the point's commit)", got, want)
	}
}

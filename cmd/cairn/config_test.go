package main

import (
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestExampleConfigIsValid keeps `cairn config example` loadable by serve.
func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := serve.ParseConfig("example", []byte(exampleConfig))
	if err != nil {
		t.Fatalf("cairn config example does not validate: %v", err)
	}
	if cfg == nil {
		t.Fatal("no config")
	}
}

// TestExampleImportedJobIsValid: the example's commented job without
// vcenter, uncommented, is valid on its own (no vcenters) and does not
// back up.
func TestExampleImportedJobIsValid(t *testing.T) {
	i := strings.Index(exampleConfig, "  # - name: imported-offsite")
	if i < 0 {
		t.Fatal("the example has no job without vcenter")
	}
	job := strings.ReplaceAll(exampleConfig[i:], "\n  # ", "\n  ")
	job = strings.Replace(job, "  # ", "  ", 1)
	cfg, err := serve.ParseConfig("example", []byte("repository: /srv/cairn/repo\njobs:\n"+job))
	if err != nil {
		t.Fatalf("the example's job without vcenter does not validate: %v\n%s", err, job)
	}
	if len(cfg.Jobs) != 1 || cfg.Jobs[0].BacksUp() || cfg.Jobs[0].Replicate == nil {
		t.Fatalf("parsed %+v", cfg.Jobs)
	}
}

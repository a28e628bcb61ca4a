package serve

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestRPOBreachOfManyVMsSavesStateOnce: when many VMs miss their RPO at
// once (a vCenter down for a day on a site of 300 VMs), one RPO check
// tells each and writes the notification state once, not once per VM
// (every write marshals all breaches so far and fsyncs: quadratic).
func TestRPOBreachOfManyVMsSavesStateOnce(t *testing.T) {
	const vms = 12
	repo := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	withRepo(t, repo, func(r *blockmap.Repo) {
		for i := range vms {
			writeTestPoint(t, r, fmt.Sprintf("imp-%02d", i), time.Now().Add(-2*time.Hour), byte(i))
		}
	})
	h := newPayloadHook(t)
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
jobs:
  - name: imp
    vms: ["imp-*"]
    rpo: 1h
notify:
  rpo_check: 1h
  targets:
    - webhook: {url: %s}
`, repo, h.srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	s, stop := runUntilStopped(t, repo, cfg)
	defer stop()
	want := strings.TrimSpace(strings.Repeat("rpo_missed ", vms))
	h.waitKinds(t, want)
	// The check at start told them all; a few writes besides its own
	// (the start, the notifier's deliveries) are fine, one per VM is not.
	s.note.saveMu.Lock()
	writes := s.note.writes
	s.note.saveMu.Unlock()
	if writes > 4 {
		t.Errorf("the RPO check that told %d breaches wrote the notification state %d times; want at most 4", vms, writes)
	}
}

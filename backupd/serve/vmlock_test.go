package serve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeWaitsForVMLock: a run of a VM that another holder (an import,
// a prune, a `cairn backup` in another process) has locked waits for the
// repository's VM lock instead of failing, then backs the VM up.
func TestServeWaitsForVMLock(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 1 << 20}}}}})
	var holder *blockmap.VMLock
	var repo *blockmap.Repo
	a := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: web
    vcenter: sim
    vms: [web-1]
    schedule: "0 0 1 1 *"
    transports: [file]
    retries: 0
`, func(s *Server) {
		var err error
		if repo, err = blockmap.Open(context.Background(), s.Config().Repository, blockmap.Options{}); err != nil {
			t.Fatal(err)
		}
		if holder, err = repo.LockVM(context.Background(), "web-1", "test holder"); err != nil {
			t.Fatal(err)
		}
	})
	defer repo.Close()
	defer holder.Release()
	if code, resp := a.do(t, "POST", "/api/v1/jobs", `{"vm":"web-1"}`, nil); code != 202 {
		t.Fatalf("POST: %d %s", code, resp)
	}
	// The run waits for the lock: it is queued, and the lock file still
	// names this test as the holder.
	for len(a.s.Runs()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	_, err := repo.LockVM(context.Background(), "web-1", "probe")
	var locked *blockmap.VMLockedError
	if !errors.As(err, &locked) || locked.Holder.Operation != "test holder" {
		t.Fatalf("lock while the test holds it: %v", err)
	}
	if r := a.s.Runs()[0]; r.State != StateQueued {
		t.Fatalf("run while the VM is locked: %+v", r)
	}
	holder.Release()
	deadline := time.Now().Add(2 * time.Minute)
	var r RunRecord
	for {
		r = a.s.Runs()[0]
		if r.State != StateQueued && r.State != StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not end: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.State != StateOK || r.Point == "" {
		t.Fatalf("run after the lock was released: %+v", r)
	}
	// The lock file stays, free; it is the only file under locks/.
	if ents, err := os.ReadDir(filepath.Join(a.repo, "locks")); err != nil || len(ents) != 1 || ents[0].Name() != "web-1.lock" {
		t.Errorf("locks/: %v %v", ents, err)
	}
	l, err := repo.LockVM(context.Background(), "web-1", "after")
	if err != nil {
		t.Fatalf("lock after the run: %v", err)
	}
	l.Release()
}

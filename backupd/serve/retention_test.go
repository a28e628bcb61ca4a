package serve

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// waitRun posts a backup of vm by job and waits until it ended ok.
func waitRun(t *testing.T, a *apiServer, vm, job string) RunRecord {
	t.Helper()
	code, resp := a.do(t, "POST", "/api/v1/jobs", `{"vm":"`+vm+`","job":"`+job+`"}`, nil)
	if code != 202 {
		t.Fatalf("POST %s/%s: %d %s", job, vm, code, resp)
	}
	var acc struct{ ID string }
	if err := json.Unmarshal([]byte(resp), &acc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, r := range a.s.Runs() {
			if r.ID == acc.ID && r.State != StateQueued && r.State != StateRunning {
				if r.State != StateOK {
					t.Fatalf("run %+v", r)
				}
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not end: %+v", acc.ID, a.s.Runs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeRetentionOfOverlappingJobs: two jobs back up one VM, an
// "hourly" one keeping 1 point and a "daily" one (by tag) keeping 3: the
// hourly job's retention keeps what the daily one keeps (the union), so a
// second job never silently loses its points. A job whose known selection
// does not hold the VM ("other", keep_last 10) does not count.
func TestServeRetentionOfOverlappingJobs(t *testing.T) {
	disk := []esxsim.DiskSpec{{Size: 1 << 20}}
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "web-1", Tags: []string{"backup:daily"}, Disks: disk},
		{Name: "db-1", Tags: []string{"backup:other"}, Disks: disk},
	}})
	a := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: hourly
    vcenter: sim
    vms: [web-1]
    schedule: "0 0 1 1 *"
    retention: {keep_last: 1}
    transports: [file]
    retries: 0
  - name: daily
    vcenter: sim
    tags: ["backup:daily"]
    schedule: "0 0 1 1 *"
    retention: {keep_last: 3}
    transports: [file]
    retries: 0
  - name: other
    vcenter: sim
    tags: ["backup:other"]
    schedule: "0 0 1 1 *"
    retention: {keep_last: 10}
    transports: [file]
    retries: 0
`, nil)
	waitRun(t, a, "db-1", "other") // other's selection is now known: db-1 only
	for i := 0; i < 5; i++ {
		waitRun(t, a, "web-1", "hourly")
	}
	repo := a.s.repo
	pts, err := repo.Points(t.Context(), "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 3 {
		t.Errorf("web-1 has %d points after 5 backups by hourly (keep_last 1) beside daily (keep_last 3): want 3", len(pts))
	}
	// Once the daily job's selection is known and no longer holds web-1
	// (a tag removed), only the hourly job's retention applies.
	a.s.inv.put("daily", nil)
	waitRun(t, a, "web-1", "hourly")
	if pts, _ := repo.Points(t.Context(), "web-1"); len(pts) != 1 {
		t.Errorf("web-1 has %d points once daily no longer selects it: want 1", len(pts))
	}
}

package serve

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeMissingVM: a job naming a VM exactly that the vCenter does not
// have (a typo, or a VM removed or renamed since) records a failed run of
// that VM with an error that names it and the fix, and counts it in the
// job's last_failed, instead of backing it up silently never again. A glob
// matching nothing and a name the job excludes are not failures.
func TestServeMissingVM(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 1 << 20}}}}})
	a := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: web
    vcenter: sim
    vms: [web-1, web-9, "db-*", web-x]
    exclude: [web-x]
    schedule: 1h
    transports: [file]
    retries: 0
`, nil)
	deadline := time.Now().Add(2 * time.Minute)
	var st JobStatus
	for st.LastEnd.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("the run at start did not end: %+v", a.s.Runs())
		}
		time.Sleep(20 * time.Millisecond)
		a.s.mu.Lock()
		st = *a.s.jobStatus("web")
		a.s.mu.Unlock()
	}
	byVM := map[string]RunRecord{}
	for _, r := range a.s.Runs() {
		byVM[r.VM] = r
	}
	if r := byVM["web-1"]; r.State != StateOK {
		t.Errorf("web-1: %+v", r)
	}
	r, ok := byVM["web-9"]
	if !ok || r.State != StateFailed || !strings.Contains(r.Error, `"web-9"`) || !strings.Contains(r.Error, "vms:") {
		t.Errorf("web-9 (not in the vCenter): %+v", r)
	}
	if len(byVM) != 2 {
		t.Errorf("runs %+v: want web-1 and web-9 only", byVM)
	}
	if st.LastOK != 1 || st.LastFail != 1 {
		t.Errorf("job status %+v: want 1 ok, 1 failed", st)
	}
	if err := missingVMError(Job{Name: "web"}, "x"); !errors.Is(err, ErrVMMissing) || !errors.Is(err, vsphere.ErrVMNotFound) {
		t.Error("missingVMError is not ErrVMMissing and vsphere.ErrVMNotFound")
	}
}

// TestAPITriggerMissingVM: a backup requested of a VM a job names that
// the vCenter does not have is 404 saying so (it said the job "does not
// select" the VM the job's own vms: list names).
func TestAPITriggerMissingVM(t *testing.T) {
	a := startAPIServer(t, apiSim(t), strings.Replace(apiConfig, `vms: ["web-*"]`, `vms: ["web-*", web-9]`, 1), nil)
	for _, body := range []string{`{"vm":"web-9","job":"web"}`, `{"vm":"web-9"}`} {
		code, resp := a.do(t, "POST", "/api/v1/jobs", body, nil)
		if code != 404 || !strings.Contains(resp, `web-9`) || !strings.Contains(resp, "does not have it") {
			t.Errorf("POST %s: %d %s", body, code, resp)
		}
	}
}

package serve

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeStatusNeverBackedUp: /api/v1/status and /api/v1/vms list a
// VM whose every backup failed (it has no point, so the catalog does not
// know it) with 0 points and its failed last run; they name the zone of
// cron schedules; a refused reload is shown until a reload succeeds.
func TestServeStatusNeverBackedUp(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 1 << 20}}}}})
	g, err := sim.Guest("web-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WriteRandom(0, 0, 256<<10, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	text := simConfigHeader + `jobs:
  - name: web
    vcenter: sim
    vms: [web-1]
    schedule: 1h
    transports: [nbd]
    nbd_command: "false {socket}"
    retries: 0
`
	a := startAPIServer(t, sim, text, nil)
	var st Status
	deadline := time.Now().Add(2 * time.Minute)
	for len(st.VMs) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("web-1's failed run is not in the status: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
		code, body := a.do(t, "GET", "/api/v1/status", "", nil)
		if code != 200 {
			t.Fatalf("status: %d %s", code, body)
		}
		st = Status{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
	}
	v := st.VMs[0]
	if v.Name != "web-1" || v.Points != 0 || v.Latest != nil || v.LastRun == nil || v.LastRun.State != StateFailed || v.LastRun.Error == "" {
		t.Errorf("status of a VM never backed up: %+v (last run %+v)", v, v.LastRun)
	}
	if st.Timezone != "UTC" {
		t.Errorf("timezone %q, want UTC", st.Timezone)
	}
	var vms []VMStatus
	if code, body := a.do(t, "GET", "/api/v1/vms", "", nil); code != 200 || json.Unmarshal([]byte(body), &vms) != nil || len(vms) != 1 || vms[0].LastRun == nil {
		t.Errorf("/api/v1/vms: %d %s", code, body)
	}

	a.s.ReloadRejected(errors.New(`cairn.yaml:3: unknown key "bogus"`))
	if st, err := a.s.Status(t.Context()); err != nil || st.ReloadError == "" || st.ReloadErrorAt.IsZero() {
		t.Errorf("status after a refused reload: %+v %v", st, err)
	}
	cfg := a.s.Config()
	a.s.Reload(cfg)
	for {
		st, err := a.s.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.ReloadError == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a valid reload did not clear the refused one: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

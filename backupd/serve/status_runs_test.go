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

// TestServeStatusUnselectedVM: a VM with points that no job backs up any
// more (here: its job removed by a reload; a VM deleted in the vCenter or
// untagged is the same) is marked unselected in the status, and its
// points are kept; a VM a job selects names the job.
func TestServeStatusUnselectedVM(t *testing.T) {
	a := startAPIServer(t, apiSim(t), simConfigHeader+`jobs:
  - name: web
    vcenter: sim
    vms: [web-1]
    schedule: "0 0 1 1 *"
    transports: [file]
    retries: 0
  - name: gold
    vcenter: sim
    tags: ["backup:gold"]
    schedule: "0 0 1 1 *"
    transports: [file]
    retries: 0
`, nil)
	waitRun(t, a, "web-1", "web")
	waitRun(t, a, "db-1", "gold")
	vm := func(name string) VMStatus {
		t.Helper()
		st, err := a.s.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range st.VMs {
			if v.Name == name {
				return v
			}
		}
		t.Fatalf("%s not in the status: %+v", name, st.VMs)
		return VMStatus{}
	}
	if v := vm("db-1"); len(v.Jobs) != 1 || v.Jobs[0] != "gold" || v.Unselected {
		t.Errorf("db-1 while gold selects it: %+v", v)
	}
	cfg := *a.s.Config()
	cfg.Jobs = cfg.Jobs[:1] // gold removed
	a.s.Reload(&cfg)
	deadline := time.Now().Add(time.Minute)
	for len(a.s.Config().Jobs) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("reload did not happen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := vm("db-1"); !v.Unselected || len(v.Jobs) != 0 || v.Points != 1 {
		t.Errorf("db-1 once no job selects it: %+v", v)
	}
	if v := vm("web-1"); v.Unselected || len(v.Jobs) != 1 {
		t.Errorf("web-1: %+v", v)
	}
}

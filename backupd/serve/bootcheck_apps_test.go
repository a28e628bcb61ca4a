package serve

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/guestimg"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBootCheckAppsConfig: boot_check's checks: and check_timeout: are
// parsed and validated like verify-boot's --check (config check refuses
// a bad spec with its line).
func TestBootCheckAppsConfig(t *testing.T) {
	cfg, err := ParseConfig("cairn.yaml", withBootCheck(`{checks: [tcp:5432, "http://:80/health=200", "https://:443/~ok"], check_timeout: 1m}`))
	if err != nil {
		t.Fatal(err)
	}
	bc := cfg.Jobs[0].BootCheck
	if len(bc.Checks) != 3 || len(bc.checks) != 3 || bc.checks[1].Status != 200 || bc.CheckTimeout != time.Minute {
		t.Errorf("boot_check %+v", bc)
	}
	if cfg, _ := ParseConfig("cairn.yaml", withBootCheck("{timeout: 5m}")); cfg.Jobs[0].BootCheck.CheckTimeout != boot.DefaultCheckTimeout {
		t.Errorf("default check_timeout %s", cfg.Jobs[0].BootCheck.CheckTimeout)
	}
	for _, tc := range []struct{ bc, err string }{
		{"{checks: tcp:22}", "want a list"},
		{"{checks: [tcp:0]}", `"tcp:0"`},
		{"{checks: [ping:10.0.0.1]}", "unknown kind"},
		{"{checks: [\"http://db1/\"]}", "leave the host out"},
		{"{checks: [\"script:check-db\"]}", "absolute path"},
		{"{checks: [[tcp:22]]}", "each check is a string"},
		{"{check_timeout: soon}", "check_timeout"},
		{"{check_timeout: -1m}", "check_timeout"},
	} {
		_, err := ParseConfig("cairn.yaml", withBootCheck(tc.bc))
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "boot_check") {
			t.Errorf("%s: error %v, want it to name boot_check and %q", tc.bc, err, tc.err)
		}
	}
}

// TestServeBootCheckApps: a job's boot_check with checks: boots the new
// point of a guest with real services; one check passes, one (a port
// nobody listens on) fails: the verdict is failed naming that check, the
// API lists both checks, and the boot_check_failed notification names the
// check.
func TestServeBootCheckApps(t *testing.T) {
	testutil.RequireTools(t, append([]string{"qemu-system-x86_64", "qemu-img"}, guestimg.Tools...)...)
	img, err := guestimg.Build(guestimg.Spec{Kind: guestimg.KindNet, Marker: "serve"})
	if err != nil {
		t.Fatal(err)
	}
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "bootvm", NICs: []esxsim.NICSpec{{Type: "e1000"}},
		Disks: []esxsim.DiskSpec{{Size: guestimg.Size}}}}})
	g, err := sim.Guest("bootvm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.SyncFromImage(0, img); err != nil {
		t.Fatal(err)
	}
	h := newPayloadHook(t)
	s := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: apps
    vcenter: sim
    vms: [bootvm]
    schedule: 1h
    transports: [file]
    boot_check: {timeout: 5m, check_timeout: 15s, checks: ["http://:8080/~cairn-app-ok serve", "tcp:5433"]}
notify:
  targets:
    - webhook: {url: "`+h.srv.URL+`"}
`, nil).s
	api := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	res := waitBootResult(t, s, api, "boot check with application checks")
	if res.Verdict != boot.VerdictFailed || res.Reason != "check tcp:5433: no answer within 15s (connection refused)" ||
		len(res.Checks) != 2 || !res.Checks[0].Passed || res.Checks[1].Passed {
		t.Fatalf("boot check %+v", res)
	}
	h.waitKinds(t, "boot_check_failed")
	ev := h.payloads()[0]
	if !strings.Contains(ev.Title, "failed its check tcp:5433") || ev.Error != "failed: "+res.Reason {
		t.Errorf("boot_check_failed %+v", ev)
	}
}

package serve

import (
	"encoding/json"
	"image/png"
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

// withBootCheck is goodConfig with boot_check: bc in its first job.
func withBootCheck(bc string) []byte {
	return []byte(strings.Replace(goodConfig, "    quiesce: auto\n", "    quiesce: auto\n    boot_check: "+bc+"\n", 1))
}

func TestBootCheckConfig(t *testing.T) {
	for _, tc := range []struct{ bc, err string }{
		{"{timeout: 5m, pattern: 'login:', max_parallel: 2}", ""},
		{"{schedule: daily}", "schedule"},
		{"{schedule: [1h]}", "schedule"},
		{"{after_backup: false}", "say when"},
		{"{timeout: soon}", "timeout"},
		{"{pattern: '('}", "pattern"},
		{"{max_parallel: 9}", "max_parallel"},
		{"{reboot: true}", "reboot"},
	} {
		cfg, err := ParseConfig("cairn.yaml", withBootCheck(tc.bc))
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.bc, err)
				continue
			}
			bc := cfg.Jobs[0].BootCheck
			if bc == nil || !bc.AfterBackup || bc.Timeout != 5*time.Minute || bc.MaxParallel != 2 || bc.Pattern != "login:" {
				t.Errorf("boot_check %+v", bc)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want it to mention %q", tc.bc, err, tc.err)
		}
	}
}

// TestServeBootCheck: a job with boot_check boots each new point after
// its backup; the verdict reaches the API, the screenshot URL and the
// metrics, and the backup run itself is not held back by the check.
func TestServeBootCheck(t *testing.T) {
	s, api := startBootServe(t, "{timeout: 5m}")
	res := waitBootResult(t, s, api, "boot check")
	if res.Verdict != boot.VerdictBooted || !strings.HasSuffix(res.Screenshot, "/boot/screenshot.png") {
		t.Fatalf("boot check %+v", res)
	}
	if runs := s.Runs(); len(runs) != 1 || runs[0].State != StateOK {
		t.Errorf("runs %+v", runs)
	}
	rec := api(res.Screenshot)
	if _, err := png.Decode(rec.Body); err != nil || rec.Header().Get("Content-Type") != "image/png" {
		t.Errorf("screenshot: %v %s", err, rec.Header().Get("Content-Type"))
	}
	var m string
	for range 50 { // the gauge is set just after the result is saved
		m = api("/metrics").Body.String()
		if strings.Contains(m, `cairn_boot_check_ok{vm="bootvm"} 1`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(m, `cairn_boot_check_ok{vm="bootvm"} 1`) || !strings.Contains(m, `cairn_boot_check_timestamp_seconds{vm="bootvm"}`) {
		t.Errorf("metrics lack the boot check:\n%s", m)
	}
	if rec := api("/api/v1/points/nosuch/latest/boot"); rec.Code != 404 {
		t.Errorf("unknown VM: %d", rec.Code)
	}
}

// startBootServe runs a server whose job backs up a real test guest (at
// start, then hourly) with the given boot_check, until the test ends.
func startBootServe(t *testing.T, bootCheck string) (*Server, func(string) *httptest.ResponseRecorder) {
	t.Helper()
	testutil.RequireTools(t, append([]string{"qemu-system-x86_64", "qemu-img"}, guestimg.Tools...)...)
	img, err := guestimg.Build(guestimg.Spec{Kind: guestimg.KindBIOS, Marker: "serve"})
	if err != nil {
		t.Fatal(err)
	}
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "bootvm", Disks: []esxsim.DiskSpec{{Size: guestimg.Size}}}}})
	g, err := sim.Guest("bootvm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.SyncFromImage(0, img); err != nil {
		t.Fatal(err)
	}
	s := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: boot
    vcenter: sim
    vms: [bootvm]
    schedule: 1h
    transports: [file]
    boot_check: `+strings.ReplaceAll(bootCheck, "%", "%%")+"\n", nil).s
	api := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	deadline := time.Now().Add(time.Minute)
	for len(s.Runs()) == 0 { // the repository is open once the first run is queued
		if time.Now().After(deadline) {
			t.Fatal("no run started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, api
}

// waitBootResult polls bootvm's latest boot check until it has a
// verdict; it fails the test when the backup fails or, within six
// minutes, no verdict (what) came.
func waitBootResult(t *testing.T, s *Server, api func(string) *httptest.ResponseRecorder, what string) boot.Result {
	t.Helper()
	deadline := time.Now().Add(6 * time.Minute)
	for {
		rec := api("/api/v1/points/bootvm/latest/boot")
		if rec.Code == 200 {
			var res boot.Result
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			return res
		}
		if runs := s.Runs(); len(runs) > 0 && runs[0].State == StateFailed {
			t.Fatalf("backup failed: %s", runs[0].Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s result; runs %+v", what, s.Runs())
		}
		time.Sleep(time.Second)
	}
}

func TestBootCheckScheduleConfig(t *testing.T) {
	for _, tc := range []struct {
		bc          string
		sched       string
		afterBackup bool
	}{
		{"{timeout: 5m}", "", true},
		{"{schedule: 6h}", "6h", false},
		{"{schedule: '0 4 * * *'}", "0 4 * * *", false},
		{"{schedule: '@daily', after_backup: true}", "@daily", true},
	} {
		cfg, err := ParseConfig("cairn.yaml", withBootCheck(tc.bc))
		if err != nil {
			t.Errorf("%s: %v", tc.bc, err)
			continue
		}
		bc := cfg.Jobs[0].BootCheck
		got := ""
		if bc.Schedule != nil {
			got = bc.Schedule.String()
		}
		if got != tc.sched || bc.AfterBackup != tc.afterBackup {
			t.Errorf("%s: schedule %q after_backup %v, want %q %v", tc.bc, got, bc.AfterBackup, tc.sched, tc.afterBackup)
		}
	}
}

// TestServeBootCheckSchedule: with boot_check {schedule: 2s} (and so no
// after_backup) the newest point of the job's VM is booted by the
// schedule once; later runs of the schedule find its verdict and boot
// nothing more.
func TestServeBootCheckSchedule(t *testing.T) {
	s, api := startBootServe(t, "{schedule: 2s, timeout: 5m}")
	res := waitBootResult(t, s, api, "scheduled boot check")
	if res.Verdict != boot.VerdictBooted {
		t.Fatalf("boot check %+v", res)
	}
	// Three more runs of the schedule: the point has its verdict.
	time.Sleep(7 * time.Second)
	m := api("/metrics").Body.String()
	if !strings.Contains(m, `cairn_boot_checks_total{vm="bootvm"} 1`+"\n") {
		t.Errorf("want exactly one boot check of bootvm:\n%s", m)
	}
}

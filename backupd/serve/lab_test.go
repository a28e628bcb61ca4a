package serve

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// flakyNBD is an NBD command that fails the first time it runs (the
// retry test) and then serves the disk through nbdkit's rate filter, so a
// backup takes long enough for the caps to be visible.
const flakyNBD = `#!/bin/sh
if mkdir "$(dirname "$0")/failed-once" 2>/dev/null; then
  echo "simulated NBD server failure" >&2
  exit 1
fi
exec nbdkit -t 1 -f -r -U "$1" --filter=rate file "$2" rate=16M
`

// TestServeJobs runs a server in-process against a three-host esxsim:
// the job selects VMs by folder and tag with an exclusion, backs them up
// at most one per host at once (but in parallel across hosts), retries
// the VM whose NBD server failed, verifies VMs against their source every
// second backup (and repairs a change CBT missed), runs a requested
// backup of a VM only a tag selects, verifies the repository (clean, then
// naming a flipped block) and leaves a cron job waiting for its time.
func TestServeJobs(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	disk := []esxsim.DiskSpec{{Size: 16 << 20}}
	sim := esxsimtest.Start(t, esxsim.Options{Hosts: 3, VMs: []esxsim.VMSpec{
		{Name: "web-1", Host: 0, Folder: "prod/web", Disks: disk},
		{Name: "web-2", Host: 0, Folder: "prod/web", Disks: disk},
		{Name: "web-test", Host: 0, Folder: "prod", Disks: disk},
		{Name: "db-1", Host: 1, Tags: []string{"backup:gold"}, Disks: disk},
		{Name: "db-2", Host: 1, Tags: []string{"backup:gold"}, Disks: disk},
		{Name: "other", Host: 2, Disks: disk},
		{Name: "golden", Host: 2, Folder: "prod", Template: true, Disks: disk},
	}})
	rng := rand.New(rand.NewPCG(1, 2))
	for _, vm := range []string{"web-1", "web-2", "web-test", "db-1", "db-2", "other"} {
		g, err := sim.Guest(vm)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.WriteRandom(0, 0, 4<<20, rng); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(t.TempDir(), "nbd", "flaky-nbd")
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(flakyNBD), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := startAPIServer(t, sim, simConfigHeader+`parallelism:
  vms: 4
  per_host: 1
jobs:
  - name: prod
    vcenter: sim
    folders: [prod]
    tags: ["backup:gold"]
    exclude: ["*-test"]
    schedule: 1h
    transports: [nbd]
    nbd_command: `+script+` {socket} {disk_local_path}
    retries: 1
    retry_delay: 1s
    verify_against_source_every: 2
  - name: yearly
    vcenter: sim
    vms: [other]
    schedule: "0 0 1 1 *"
`, nil)
	s, repo := srv.s, srv.repo
	api := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	waitRuns := func(what string, cond func(runs []RunRecord) bool) []RunRecord {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			runs := s.Runs()
			if cond(runs) {
				return runs
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; runs: %+v", what, runs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	settled := func(runs []RunRecord, n int) bool {
		if len(runs) < n {
			return false
		}
		for _, r := range runs {
			if r.State == StateQueued || r.State == StateRunning {
				return false
			}
		}
		return true
	}

	// The scheduled run at start: the folder and the tag select four VMs;
	// web-test is excluded, other belongs to the cron job only.
	runs := waitRuns("the first scheduled run", func(r []RunRecord) bool { return settled(r, 4) })
	got := map[string]RunRecord{}
	for _, r := range runs {
		if r.State != StateOK {
			t.Errorf("run of %s: %s: %s", r.VM, r.State, r.Error)
		}
		got[r.VM] = r
	}
	wantHost := map[string]string{"web-1": sim.Hosts[0], "web-2": sim.Hosts[0], "db-1": sim.Hosts[1], "db-2": sim.Hosts[1]}
	if len(got) != len(wantHost) {
		t.Fatalf("the job backed up %v, want %v", keys(got), keys(wantHost))
	}
	retried := 0
	for vm, host := range wantHost {
		r, ok := got[vm]
		if !ok {
			t.Fatalf("%s was not backed up (runs %v)", vm, keys(got))
		}
		if r.Host != host || r.Point == "" || r.BytesRead < 4<<20 {
			t.Errorf("run of %s: host %q (want %q), point %q, read %d", vm, r.Host, host, r.Point, r.BytesRead)
		}
		if p := r.Progress; p == nil || p.Total < 4<<20 || p.Done != p.Total || p.Disk == "" {
			t.Errorf("run of %s: progress %+v, want every byte to read read", vm, p)
		}
		if r.Attempts == 2 {
			retried++
		}
	}
	if retried != 1 {
		t.Errorf("%d runs needed a second attempt, want exactly the one whose NBD server failed", retried)
	}
	// per_host 1: runs on one host never overlap; runs on different hosts
	// do (each reads 4 MiB at 16 MB/s, and all four started together).
	overlap := func(a, b RunRecord) bool { return a.Start.Before(b.Committed) && b.Start.Before(a.Committed) }
	across := false
	for _, a := range runs {
		for _, b := range runs {
			if a.ID >= b.ID || a.Attempts > 1 || b.Attempts > 1 {
				continue
			}
			if a.Host == b.Host && overlap(a, b) {
				t.Errorf("%s and %s ran at once on host %s (per_host: 1)", a.VM, b.VM, a.Host)
			}
			across = across || (a.Host != b.Host && overlap(a, b))
		}
	}
	if !across {
		t.Errorf("no two VMs of different hosts were backed up at once (vms: 4): %+v", runs)
	}

	// A change CBT does not report, on db-2.
	if err := sim.SilentlyMissChange("db-2", 0, 8<<20, 64<<10); err != nil {
		t.Fatal(err)
	}
	// Requested backups: db-1 is selected only through its tag (the server
	// asks the vCenter); each is the VM's second backup, so a verify
	// against the source follows.
	for _, vm := range []string{"db-1", "db-2"} {
		if rec := api("POST", "/api/v1/jobs", `{"vm":"`+vm+`"}`); rec.Code != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", vm, rec.Code, rec.Body)
		}
	}
	if rec := api("POST", "/api/v1/jobs", `{"vm":"web-test"}`); rec.Code != http.StatusNotFound {
		t.Errorf("POST for an excluded VM: %d %s", rec.Code, rec.Body)
	}
	// Named explicitly, a job still runs only what it selects: not a
	// template in its folder, not a VM the vCenter does not have, not a
	// VM it excludes (issue #12 item 9).
	for _, vm := range []string{"golden", "gone", "web-test"} {
		if rec := api("POST", "/api/v1/jobs", `{"vm":"`+vm+`","job":"prod"}`); rec.Code != http.StatusForbidden {
			t.Fatalf("POST %s with job prod: %d %s, want 403", vm, rec.Code, rec.Body)
		}
	}
	runs = waitRuns("the requested runs", func(r []RunRecord) bool { return settled(r, 6) })
	for _, r := range runs[4:] {
		if r.State != StateOK || r.Trigger != "api" {
			t.Errorf("requested run of %s: %s %s: %s", r.VM, r.Trigger, r.State, r.Error)
		}
		// The host by name, as a scheduled run has it: per_host counts
		// requested and scheduled runs of one host together (a requested
		// run had the host's MoRef, "host-15", a cap of its own).
		if r.Host != wantHost[r.VM] {
			t.Errorf("requested run of %s: host %q, want %q as the scheduled run had", r.VM, r.Host, wantHost[r.VM])
		}
		want := "ok"
		if r.VM == "db-2" {
			want = "repaired "
		}
		if !strings.HasPrefix(r.SourceVerify, want) {
			t.Errorf("verify against source after the second backup of %s: %q, want %q", r.VM, r.SourceVerify, want)
		}
	}

	// Repository verify through the API: clean, then a flipped byte is named.
	verify := func() VerifyStatus {
		t.Helper()
		if rec := api("POST", "/api/v1/verify", ""); rec.Code != http.StatusAccepted {
			t.Fatalf("POST /api/v1/verify: %d %s", rec.Code, rec.Body)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			st, err := s.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !st.Verify.Running && !st.Verify.End.IsZero() {
				return st.Verify
			}
			if time.Now().After(deadline) {
				t.Fatal("repository verify did not end")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if v := verify(); v.Error != "" || len(v.Bad) != 0 || v.Blocks == 0 {
		t.Fatalf("verify of a clean repository: %+v", v)
	}
	img := firstDataImage(t, repo)
	f, err := os.OpenFile(img.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, img.off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, img.off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if v := verify(); len(v.Bad) == 0 {
		t.Errorf("verify after flipping a byte of %s: %+v", img.path, v)
	}

	// Status and metrics.
	var st Status
	if err := json.Unmarshal(api("GET", "/api/v1/status", "").Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	for _, j := range st.Jobs {
		switch j.Name {
		case "yearly":
			want := time.Date(time.Now().UTC().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
			if !j.NextRun.Equal(want) || !j.LastEnd.IsZero() {
				t.Errorf("cron job: next run %s (want %s), last end %s (a cron job does not run at start)", j.NextRun, want, j.LastEnd)
			}
		case "prod":
			if j.LastOK != 1 || j.Running != 0 || j.NextRun.IsZero() {
				t.Errorf("prod status %+v", j)
			}
		}
	}
	if len(st.Jobs) != 2 || len(st.VMs) != 4 || st.Repository != repo {
		t.Errorf("status: %+v", st)
	}
	metrics := api("GET", "/metrics", "").Body.String()
	for _, want := range []string{
		`cairn_points{vm="db-2"} 3`, // two backups and the repaired point
		`cairn_verify_errors 1`,
		`cairn_job_retries_total{job="prod"} 1`,
		`cairn_source_verifies_total{result="differs",vm="db-2"} 1`,
		`cairn_source_verifies_total{result="ok",vm="db-1"} 1`,
		`cairn_backup_read_bytes_total{vm="web-1"}`,
		`cairn_vm_stored_bytes{vm="web-1"}`,
		`cairn_last_backup_stored_bytes{vm="db-1"}`,
		`cairn_backups_running 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if sf, err := ReadServeFile(repo); err != nil || sf.PID != os.Getpid() || sf.Listen == "" {
		t.Errorf("serve.json: %+v, %v", sf, err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

type dataSpot struct {
	path string
	off  int64
}

// firstDataImage finds a byte of stored data in some delta image.
func firstDataImage(t *testing.T, repo string) dataSpot {
	t.Helper()
	var spot dataSpot
	_ = filepath.WalkDir(filepath.Join(repo, "images"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || spot.path != "" || !strings.HasSuffix(p, ".img") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, c := range data {
			if c != 0 {
				spot = dataSpot{p, int64(i)}
				return nil
			}
		}
		return nil
	})
	if spot.path == "" {
		t.Fatal("no stored data in the repository")
	}
	return spot
}

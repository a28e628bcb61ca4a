package serve

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// hookScript writes an executable shell script for a test's hooks.
func hookScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// requestRun asks for a backup of vm by job and waits until the run ends
// (any state).
func requestRun(t *testing.T, a *apiServer, vm, job string) RunRecord {
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
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not end: %+v", acc.ID, a.s.Runs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLines waits until file holds n lines and returns them.
func waitLines(t *testing.T, file string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(b) > 0 && len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %d lines", file, b, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeHooksOrder: a job's five hooks run in order around a real
// backup of the simulated vCenter: pre_job, pre_snapshot (no snapshot
// yet: no frozen disk file on the datastore), post_snapshot (the snapshot
// exists, before the disks are read), post_backup (point committed,
// snapshot removed), post_job; each with its CAIRN_* variables and none
// of cairn's credentials; the run and the job record keep their output.
func TestServeHooksOrder(t *testing.T) {
	t.Setenv("CAIRN_VC_PASSWORD", "env-secret-of-cairn")
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 2 << 20}}}}})
	dir := t.TempDir()
	log := filepath.Join(dir, "hooks.log")
	envOut := filepath.Join(dir, "env.out")
	hook := hookScript(t, dir, "hook.sh", fmt.Sprintf(`frozen=$(find %q -name '*-[0-9][0-9][0-9][0-9][0-9][0-9]-flat.vmdk' | wc -l)
echo "$CAIRN_HOOK job=$CAIRN_JOB vm=$CAIRN_VM moref=$CAIRN_VM_MOREF result=$CAIRN_RESULT point=$CAIRN_POINT error=$CAIRN_ERROR frozen=$frozen" >> %q
env >> %q
echo "said by $CAIRN_HOOK"
`, sim.DatastoreDir, log, envOut))
	a := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: nightly
    vcenter: sim
    vms: [web-1]
    schedule: "0 0 1 1 *"
    transports: [file]
    retries: 0
    hooks:
      pre_job: [{command: [`+hook+`]}]
      pre_snapshot: [{command: [`+hook+`], timeout: 1m, on_failure: fail}]
      post_snapshot: {command: [`+hook+`]}
      post_backup: [{command: [`+hook+`]}]
      post_job: [{command: [`+hook+`, --password=hook-secret]}]
`, nil)
	r := requestRun(t, a, "web-1", "nightly")
	if r.State != StateOK || r.Point == "" {
		t.Fatalf("run %+v", r)
	}
	moref, err := sim.VMRef("web-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"pre_job job=nightly vm= moref= result= point= error= frozen=0",
		"pre_snapshot job=nightly vm=web-1 moref=" + moref.Value + " result= point= error= frozen=0",
		"post_snapshot job=nightly vm=web-1 moref=" + moref.Value + " result=ok point= error= frozen=1",
		"post_backup job=nightly vm=web-1 moref=" + moref.Value + " result=ok point=" + r.Point + " error= frozen=0",
		"post_job job=nightly vm= moref= result=ok point= error= frozen=0",
	}
	got := waitLines(t, log, len(want))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hooks ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var ops []string
	for _, e := range sim.Journal() {
		if e.VM == "web-1" && (e.Op == esxsim.OpSnapshot || e.Op == esxsim.OpRemoveSnapshot) {
			ops = append(ops, e.Op)
		}
	}
	// (the first backup's CBT enable may take and remove a snapshot of
	// its own first)
	if n := len(ops); n < 2 || ops[n-2] != esxsim.OpSnapshot || ops[n-1] != esxsim.OpRemoveSnapshot {
		t.Errorf("simulator saw %q", ops)
	}
	env, _ := os.ReadFile(envOut)
	for _, secret := range []string{sim.Password, "env-secret-of-cairn", "CAIRN_VC_"} {
		if strings.Contains(string(env), secret) {
			t.Errorf("a hook's environment holds %q", secret)
		}
	}
	// the run and the job record keep each hook's output
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hooks []string
		for _, run := range a.s.Runs() {
			if run.ID == r.ID {
				for _, h := range run.Hooks {
					hooks = append(hooks, h.Hook+":"+strings.TrimSpace(h.Output))
				}
			}
		}
		if len(hooks) == 5 {
			if hooks[2] != "post_snapshot:said by post_snapshot" || hooks[4] != "post_job:said by post_job" {
				t.Errorf("run hooks %q", hooks)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run hooks %q", hooks)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// a viewer sees which hooks ran and how they ended, not their
	// command lines (a password) or output (hardening: redact.go)
	viewer, err := AddToken(a.repo, "desk", RoleViewer, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/jobs", "/api/v1/vms"} {
		for _, tc := range []struct {
			tok  string
			want bool
		}{{viewer, false}, {a.token, true}} {
			code, body := a.do(t, "GET", path, "", map[string]string{"Authorization": "Bearer " + tc.tok})
			if code != 200 || !strings.Contains(body, `"post_snapshot"`) {
				t.Fatalf("GET %s: %d %s", path, code, body)
			}
			for _, secret := range []string{"said by post_snapshot", "hook-secret"} {
				if path == "/api/v1/vms" && secret == "hook-secret" {
					continue // post_job is no VM's
				}
				if strings.Contains(body, secret) != tc.want {
					t.Errorf("GET %s (admin %v) holds %q: %v", path, tc.want, secret, !tc.want)
				}
			}
		}
	}
	recs, err := backupd.NewJobLog(a.repo).List()
	if err != nil {
		t.Fatal(err)
	}
	var backupHooks []string
	for _, rec := range recs {
		if rec.Kind == backupd.JobBackup && rec.Point == r.Point {
			for _, h := range rec.Hooks {
				backupHooks = append(backupHooks, h.Hook)
			}
		}
	}
	if strings.Join(backupHooks, " ") != "pre_snapshot post_snapshot post_backup" {
		t.Errorf("job record hooks %q", backupHooks)
	}
}

// TestServeHooksPolicies: a pre_snapshot hook that fails skips the VM
// (state skipped, the hook's last line, no snapshot, no failure told),
// fails it (told as backup_failed; a hook past its timeout too) or warns
// (point committed, backup_warning told); a snapshot that fails still
// runs post_snapshot (thaw) with CAIRN_RESULT failed and the error.
func TestServeHooksPolicies(t *testing.T) {
	disk := []esxsim.DiskSpec{{Size: 1 << 20}}
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: disk}, {Name: "db-1", Disks: disk}}})
	dir := t.TempDir()
	log := filepath.Join(dir, "hooks.log")
	lag := hookScript(t, dir, "lag.sh", "echo checking replica\necho replica lag 600s\nexit 1\n")
	hang := hookScript(t, dir, "hang.sh", "sleep 300\n")
	note := hookScript(t, dir, "note.sh", `echo "$CAIRN_HOOK vm=$CAIRN_VM result=$CAIRN_RESULT error=$CAIRN_ERROR" >> `+log+"\n")
	h := newPayloadHook(t)
	job := func(name, vm, pre string) string {
		return `  - name: ` + name + `
    vcenter: sim
    vms: [` + vm + `]
    schedule: "0 0 1 1 *"
    transports: [file]
    retries: 0
    hooks:
      pre_snapshot: [` + pre + `]
      post_snapshot: [{command: [` + note + `]}]
`
	}
	a := startAPIServer(t, sim, simConfigHeader+"jobs:\n"+
		job("skipper", "web-1", "{command: ["+lag+"], on_failure: skip}")+
		job("failer", "web-1", "{command: ["+lag+"]}")+
		job("hanger", "web-1", "{command: ["+hang+"], timeout: 300ms, on_failure: fail}")+
		job("warner", "web-1", "{command: ["+lag+"], on_failure: warn}")+
		job("thaw", "db-1", "{command: ["+note+"]}")+
		job("gate", "web-1", "{command: ["+note+"]}")+`      pre_job: [{command: [`+lag+`], on_failure: skip}]
notify:
  targets:
    - webhook: {url: "`+h.srv.URL+`"}
`, nil)
	snaps := func(vm string) int {
		n := 0
		for _, e := range sim.Journal() {
			if e.VM == vm && e.Op == esxsim.OpSnapshot {
				n++
			}
		}
		return n
	}

	r := requestRun(t, a, "web-1", "skipper")
	if r.State != StateSkipped || !strings.Contains(r.Error, "skipped by pre hook") || !strings.HasSuffix(r.Error, "exit status 1: replica lag 600s") || r.Point != "" {
		t.Errorf("skipped run %+v", r)
	}
	if !RunEnded(r.State) { // cairn trigger --wait and GET /api/v1/jobs/wait
		t.Errorf("a skipped run is not ended for GET /api/v1/jobs/wait")
	}
	r = requestRun(t, a, "web-1", "failer")
	if r.State != StateFailed || !strings.HasSuffix(r.Error, "replica lag 600s") {
		t.Errorf("failed run %+v", r)
	}
	r = requestRun(t, a, "web-1", "hanger")
	if r.State != StateFailed || !strings.Contains(r.Error, "timed out after 300ms") {
		t.Errorf("timed out run %+v", r)
	}
	if n := snaps("web-1"); n != 0 {
		t.Errorf("%d snapshots of web-1 after hooks refused it", n)
	}
	r = requestRun(t, a, "web-1", "warner")
	if r.State != StateOK || r.Point == "" || len(r.Warnings) != 1 || !strings.HasSuffix(r.Warnings[0], "replica lag 600s") {
		t.Errorf("warned run %+v", r)
	}

	if err := sim.SetSnapshotFault("db-1", &types.InvalidState{}); err != nil {
		t.Fatal(err)
	}
	r = requestRun(t, a, "db-1", "thaw")
	if r.State != StateFailed {
		t.Errorf("run with a failing snapshot %+v", r)
	}
	// post_snapshot runs once pre_snapshot ran, whatever followed: the
	// runs of web-1 (skipped, failed, timed out, warned), then db-1's pair
	// whose snapshot failed
	want := []string{
		"post_snapshot vm=web-1 result=skipped error=skipped by pre hook: pre_snapshot hook " + lag + ": exit status 1: replica lag 600s",
		"post_snapshot vm=web-1 result=failed error=hook failed: pre_snapshot hook " + lag + ": exit status 1: replica lag 600s",
		"post_snapshot vm=web-1 result=failed error=hook failed: pre_snapshot hook " + hang + ": timed out after 300ms (its process group was killed)",
		"post_snapshot vm=web-1 result=ok error=",
		"pre_snapshot vm=db-1 result= error=",
		"post_snapshot vm=db-1 result=failed error=",
	}
	lines := waitLines(t, log, len(want))
	for i, w := range want {
		if i == len(want)-1 {
			if !strings.HasPrefix(lines[i], w) || len(lines[i]) == len(w) {
				t.Errorf("line %d %q, want %q and the error", i, lines[i], w)
			}
		} else if lines[i] != w {
			t.Errorf("line %d %q, want %q", i, lines[i], w)
		}
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		k := h.kinds()
		n := map[string]int{}
		for _, f := range strings.Fields(k) {
			n[f]++
		}
		if n["backup_failed"] == 3 && n["backup_warning"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("told %q, want 3 backup_failed (failer, hanger, thaw) and 1 backup_warning (warner), nothing for the skip", k)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range h.payloads() {
		if p.Kind == "backup_warning" && !strings.Contains(p.Error, "pre_snapshot hook "+lag+": exit status 1: replica lag 600s") {
			t.Errorf("backup_warning %+v", p)
		}
	}

	// a pre_job hook that skips: the run is skipped before any VM hook
	r = requestRun(t, a, "web-1", "gate")
	if r.State != StateSkipped || !strings.HasSuffix(r.Error, "pre_job hook "+lag+": exit status 1: replica lag 600s") {
		t.Errorf("run skipped by pre_job %+v", r)
	}
	if b, _ := os.ReadFile(log); strings.Count(string(b), "\n") != len(want) {
		t.Errorf("VM hooks ran in a run its pre_job skipped:\n%s", b)
	}

	// /api/v1/status names each job's failed hooks of its last run (set
	// when the job run ends, after the notifications: waited for)
	lagFail := "pre_snapshot hook " + lag + ": exit status 1: replica lag 600s"
	wantStatus := map[string]string{
		"skipper": fmt.Sprintf("ok 0 failed 0 hooks %q", []string{lagFail}),
		"failer":  fmt.Sprintf("ok 0 failed 1 hooks %q", []string{lagFail}),
		"warner":  fmt.Sprintf("ok 1 failed 0 hooks %q", []string{lagFail}),
		"thaw":    "ok 0 failed 1 hooks []",
		"gate":    fmt.Sprintf("ok 0 failed 0 hooks %q", []string{"pre_job hook " + lag + ": exit status 1: replica lag 600s"}),
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		var st struct{ Jobs []JobStatus }
		if code, body := a.do(t, "GET", "/api/v1/status", "", nil); code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("status %d %s", code, body)
		}
		got := map[string]string{}
		for _, j := range st.Jobs {
			got[j.Name] = fmt.Sprintf("ok %d failed %d hooks %q", j.LastOK, j.LastFail, j.LastHookFailures)
		}
		bad := ""
		for name, w := range wantStatus {
			if got[name] != w {
				bad += fmt.Sprintf("\njob %s: %s, wantStatus %s", name, got[name], w)
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/v1/status:%s", bad)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A viewer learns that the hooks failed and why they ended, not the
	// last line they printed, which the runs' errors and warnings and the
	// status's failed hooks carry; an admin sees it.
	viewer, err := AddToken(a.repo, "desk", RoleViewer, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/jobs", "/api/v1/status", "/api/v1/vms"} {
		code, body := a.do(t, "GET", path, "", map[string]string{"Authorization": "Bearer " + viewer})
		if code != 200 || strings.Contains(body, "replica lag") || !strings.Contains(body, lag+": exit status 1: (hook output redacted)") {
			t.Errorf("GET %s as viewer: %d, holds the hook's output or not its redacted summary:\n%s", path, code, body)
		}
		if code, body := a.do(t, "GET", path, "", nil); code != 200 || !strings.Contains(body, "exit status 1: replica lag 600s") {
			t.Errorf("GET %s as admin: %d, without the hook's last line", path, code)
		}
	}
}

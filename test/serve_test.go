package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/lab"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// serveLogBuffer is a bytes.Buffer a child process writes while the test reads.
type serveLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *serveLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *serveLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveStartChild starts bin with args in its own process group; the returned
// channel receives its exit. The child is killed when the test ends.
func serveStartChild(t *testing.T, bin string, stderr io.Writer, args ...string) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return cmd, exited
}

func serveFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveAPI is a client of a cairn serve's API with the token of its
// repository (read on each request: serve writes it when it starts).
type serveAPI struct{ base, repo string }

func (a serveAPI) request(method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		return nil, err
	}
	if tok, err := serve.ReadToken(a.repo); err == nil {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return http.DefaultClient.Do(req)
}

func (a serveAPI) get(path string) (*http.Response, error) { return a.request("GET", path, nil) }

func (a serveAPI) post(path string, body io.Reader) (*http.Response, error) {
	return a.request("POST", path, body)
}

// getJSON GETs path into v; it returns false while the server is not up.
func (a serveAPI) getJSON(path string, v any) bool {
	resp, err := a.get(path)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// serveWaitFor polls cond every 200ms for up to 45s.
func serveWaitFor(t *testing.T, what string, exited <-chan error, logs *serveLogBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		select {
		case err := <-exited:
			t.Fatalf("cairn serve exited (%v) while waiting for %s:\n%s", err, what, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, logs.String())
		}
	}
}

// serveLab is a `cairn lab` child started for a serve test, with its
// repository initialised (serve itself is the test's to start).
type serveLab struct {
	dir    string // the lab's directory: cairn.yaml, journal/
	listen string // the free address the lab's config gives serve
	cfg    lab.ServeConfig
	raw    []byte // the lab's cairn.yaml as written
}

// startServeLab starts `cairn lab` with vms VMs writing every 2s, 64 MiB
// disks and the job schedule sched, waits for its config and runs
// `cairn init` on its repository.
func startServeLab(t *testing.T, bin string, vms int, sched string) *serveLab {
	t.Helper()
	l := &serveLab{dir: filepath.Join(t.TempDir(), "lab"), listen: serveFreeAddr(t)}
	var labErr serveLogBuffer
	_, labExited := serveStartChild(t, bin, &labErr, "lab", "--dir", l.dir, "--vms", strconv.Itoa(vms), "--interval", "2s",
		"--disk-size-mib", "64", "--schedule", sched, "--serve-listen", l.listen)
	l.cfg = waitLabConfig(t, filepath.Join(l.dir, "cairn.yaml"), labExited, nil)
	mustCairn(t, "--repo", l.cfg.Repository, "init")
	raw, err := os.ReadFile(filepath.Join(l.dir, "cairn.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l.raw = raw
	return l
}

// writeConfig writes serve's own config (beside the lab's directory, so
// the test may change it while serve runs) and returns its path.
func (l *serveLab) writeConfig(t *testing.T, data []byte) string {
	t.Helper()
	f := filepath.Join(filepath.Dir(l.dir), "serve.yaml")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestServeLab runs `cairn serve` against `cairn lab`, both as child
// processes, with the lab's own cairn.yaml (VMs selected by their vSphere
// tag, on two ESXi hosts): scheduled points appear in the API and the
// mount, every guest file read through the mount matches what the lab's
// guest writer wrote at that point's snapshot, retention keeps the newest
// points, a job requested through the API runs, metrics and `cairn
// status`/`cairn jobs` reflect it, SIGHUP with a broken config keeps the
// old one, and SIGTERM while a backup reads its disk leaves no snapshot,
// no mount and no partial point.
func TestServeLab(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "nbdkit")
	bin := buildCairn(t)
	lb := startServeLab(t, bin, 2, "3s")
	labDir, listen, labCfg, repo := lb.dir, lb.listen, lb.cfg, lb.cfg.Repository

	// serve reads its own copy, so the test can break it later.
	// Keep three points, so retention has something to delete.
	raw := bytes.Replace(lb.raw, []byte("keep_last: 20"), []byte("keep_last: 3"), 1)
	if bytes.Equal(raw, lb.raw) {
		t.Fatalf("no keep_last: 20 in the lab's cairn.yaml:\n%s", lb.raw)
	}
	cfgFile := lb.writeConfig(t, raw)
	// A cairn mount killed with SIGKILL leaves a dead FUSE mount at the
	// mount point; serve must clear it rather than fail to start.
	if err := os.MkdirAll(labCfg.Mount, 0o755); err != nil {
		t.Fatal(err)
	}
	var mountErr serveLogBuffer
	mnt, _ := serveStartChild(t, bin, &mountErr, "--repo", repo, "mount", labCfg.Mount)
	serveWaitFor(t, "the mount to be dead", nil, &mountErr, func() bool {
		if _, err := os.Stat(filepath.Join(labCfg.Mount, ".")); err != nil {
			return false
		}
		if m, _ := os.ReadFile("/proc/mounts"); !bytes.Contains(m, []byte(" "+labCfg.Mount+" ")) {
			return false
		}
		syscall.Kill(-mnt.Process.Pid, syscall.SIGKILL)
		_, err := os.Stat(labCfg.Mount)
		for i := 0; i < 50 && !errors.Is(err, syscall.ENOTCONN); i++ {
			time.Sleep(20 * time.Millisecond)
			_, err = os.Stat(labCfg.Mount)
		}
		return errors.Is(err, syscall.ENOTCONN)
	})

	var logs serveLogBuffer
	srv, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	base := "http://" + listen
	api := serveAPI{base: base, repo: repo}
	vms := []string{"lab-vm-1", "lab-vm-2"}

	for _, vm := range vms {
		var pts []blockmap.Point
		serveWaitFor(t, "two points of "+vm, exited, &logs, func() bool {
			pts = nil
			return api.getJSON("/api/v1/points?vm="+vm, &pts) && len(pts) >= 2
		})
	}
	if !strings.Contains(logs.String(), "removed the dead mount") {
		t.Errorf("serve did not say it cleared the dead mount:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"vm":"lab-vm-2"`) || !strings.Contains(logs.String(), `"disk":"scsi0-0"`) {
		t.Errorf("serve's JSON logs do not name the VM and the disk:\n%s", logs.String())
	}
	// The lab puts its VMs on two hosts; the runs say which.
	var jobs serve.JobsResponse
	if !api.getJSON("/api/v1/jobs", &jobs) {
		t.Fatal("GET /api/v1/jobs failed")
	}
	hosts := map[string]string{}
	for _, r := range jobs.Runs {
		if r.State == serve.StateOK {
			hosts[r.VM] = r.Host
		}
	}
	if len(hosts) != 2 || hosts["lab-vm-1"] == hosts["lab-vm-2"] || hosts["lab-vm-1"] == "" {
		t.Errorf("hosts of the lab VMs' runs: %v, want two different ESXi hosts", hosts)
	}

	// Every guest file of the newest points, read through serve's mount,
	// is what the guest writer wrote at the snapshot.
	for _, vm := range vms {
		var pts []blockmap.Point
		if !api.getJSON("/api/v1/points?vm="+vm, &pts) || len(pts) == 0 {
			t.Fatalf("points of %s", vm)
		}
		p := pts[len(pts)-1]
		var disks []string
		for _, d := range p.Disks {
			disks = append(disks, d.Name)
		}
		root := func(disk string, part int) string {
			return filepath.Join(labCfg.Mount, vm, p.ID, "fs", disk, fmt.Sprintf("p%d", part))
		}
		gen := checkJournalTrees(t, vm+" point "+p.ID+" (mount)", filepath.Join(labDir, "journal", vm+".jsonl"), disks, root, p.Time, p.Committed) // p.Time: the snapshot, taken before the point began
		t.Logf("%s point %s: guest batch %d, every file as the journal says", vm, p.ID, gen)
	}

	vm := "lab-vm-1"
	var vmStatus []serve.VMStatus
	if !api.getJSON("/api/v1/vms", &vmStatus) || len(vmStatus) != 2 || vmStatus[0].Name != vm || vmStatus[0].Points < 1 || vmStatus[0].Latest == nil {
		t.Errorf("/api/v1/vms: %+v", vmStatus)
	}

	// A backup requested through the API runs.
	resp, err := api.post("/api/v1/jobs", strings.NewReader(fmt.Sprintf(`{"vm":%q}`, vm)))
	if err != nil {
		t.Fatal(err)
	}
	var accepted struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&accepted); err != nil || resp.StatusCode != http.StatusAccepted || accepted.ID == "" {
		t.Fatalf("POST /api/v1/jobs: status %d, id %q, %v", resp.StatusCode, accepted.ID, err)
	}
	resp.Body.Close()
	serveWaitFor(t, "API run "+accepted.ID, exited, &logs, func() bool {
		var jobs serve.JobsResponse
		if !api.getJSON("/api/v1/jobs", &jobs) {
			return false
		}
		for _, r := range jobs.Runs {
			if r.ID == accepted.ID {
				if r.State == serve.StateFailed {
					t.Fatalf("API run failed: %s", r.Error)
				}
				return r.State == serve.StateOK && r.Point != "" && r.Trigger == "api"
			}
		}
		return false
	})
	// Retention: once four or more backups of the VM are done and none is
	// running, three points are left and the newest is the last backup's.
	var state string
	serveWaitFor(t, "retention to leave three points", exited, &logs, func() bool {
		var jobs serve.JobsResponse
		var pts []blockmap.Point
		if !api.getJSON("/api/v1/jobs", &jobs) || !api.getJSON("/api/v1/points?vm="+vm, &pts) {
			return false
		}
		okRuns, pruned := 0, 0
		var made []string // the VM's points in commit order
		for _, r := range jobs.Runs {
			if r.VM != vm {
				continue
			}
			if r.State == serve.StateRunning || r.State == serve.StateQueued {
				return false
			}
			if r.State == serve.StateOK {
				okRuns, pruned = okRuns+1, pruned+r.Pruned
				made = append(made, r.Point)
			}
		}
		var kept []string
		for _, p := range pts {
			kept = append(kept, p.ID)
		}
		sort.Strings(made)
		state = fmt.Sprintf("%d successful runs pruned %d points; kept %v of %v", okRuns, pruned, kept, made)
		// keep_last 3: exactly the three newest points the server made.
		return okRuns >= 4 && pruned > 0 && len(made) >= 3 && slices.Equal(kept, made[len(made)-3:])
	})
	t.Log(state)
	resp, err = api.post("/api/v1/jobs", strings.NewReader(`{"vm":"no-such-vm"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST for an unknown VM: status %d, want 404", resp.StatusCode)
	}

	// Metrics name the VMs' points, bytes and last success.
	mresp, err := api.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{`cairn_points{vm="lab-vm-1"} 3`, `cairn_last_success_timestamp_seconds{vm="lab-vm-2"}`,
		`cairn_backup_read_bytes_total{vm="lab-vm-2"}`, `cairn_vm_stored_bytes{vm="lab-vm-1"}`, "cairn_repository_bytes",
		`cairn_job_duration_seconds_count{job="lab",vm="lab-vm-1"}`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}

	// cairn status and cairn jobs find the server through the repository.
	status := mustCairn(t, "--repo", repo, "status")
	for _, want := range []string{"cairn serve", "http://" + listen, "lab", "@every 1h", "lab-vm-1", "lab-vm-2"} {
		if !strings.Contains(status, want) {
			t.Errorf("cairn status lacks %q:\n%s", want, status)
		}
	}
	if out := mustCairn(t, "--repo", repo, "jobs", "--last", "5"); !strings.Contains(out, "runs of cairn serve") || !strings.Contains(out, "schedule") {
		t.Errorf("cairn jobs with a server:\n%s", out)
	}

	// cairn trigger asks the server for a backup and waits for it.
	if out := mustCairn(t, "--repo", repo, "trigger", "--vm", "lab-vm-2", "--wait"); !strings.Contains(out, "lab-vm-2: point ") {
		t.Errorf("cairn trigger --wait:\n%s", out)
	}
	if res := runCairn(t, nil, "--repo", repo, "trigger", "--vm", "no-such-vm"); res.code == 0 || !strings.Contains(res.stderr, `no job of the configuration selects VM "no-such-vm"`) {
		t.Errorf("cairn trigger of an unknown VM: exit %d, %s", res.code, res.stderr)
	}

	// SIGHUP with a broken config: rejected with its line, server stays up.
	if err := os.WriteFile(cfgFile, append(raw, []byte("bogus_key: 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	serveWaitFor(t, "the reload to be rejected", exited, &logs, func() bool {
		return strings.Contains(logs.String(), "reload rejected") && strings.Contains(logs.String(), "bogus_key")
	})
	var health string
	if r, err := http.Get(base + "/healthz"); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("healthz after a broken reload: %v", err)
	} else {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		health = string(b)
	}
	if strings.TrimSpace(health) != "ok" {
		t.Errorf("healthz said %q", health)
	}
	// cairn status says so (a `systemctl reload` gives no answer).
	if out := mustCairn(t, "--repo", repo, "status"); !strings.Contains(out, "CONFIG RELOAD REJECTED") || !strings.Contains(out, "bogus_key") {
		t.Errorf("cairn status after a rejected reload:\n%s", out)
	}

	// SIGHUP with a valid config: backups now read over NBD from nbdkit
	// throttled to 128 KiB/s, so the next backup is still reading its
	// disk when SIGTERM comes.
	slow := bytes.Replace(raw, []byte("transports:\n      - file\n      - nbd"), []byte("transports:\n      - nbd"), 1)
	slow = regexp.MustCompile(`nbd_command: .*`).ReplaceAll(slow,
		[]byte("nbd_command: nbdkit -t 1 -f -r -U {socket} --filter=rate file {disk_local_path} rate=128K"))
	if bytes.Equal(slow, raw) || !bytes.Contains(slow, []byte("rate=128K")) || bytes.Contains(slow, []byte("- file")) {
		t.Fatalf("cannot switch the config to slow NBD:\n%s", slow)
	}
	if err := os.WriteFile(cfgFile, slow, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	serveWaitFor(t, "the valid config to be reloaded", exited, &logs, func() bool {
		return strings.Contains(logs.String(), "configuration reloaded")
	})
	if out := mustCairn(t, "--repo", repo, "status"); strings.Contains(out, "REJECTED") {
		t.Errorf("cairn status after a valid reload still shows the rejected one:\n%s", out)
	}
	var reading string
	serveWaitFor(t, "a backup reading through the throttled nbdkit", exited, &logs, func() bool {
		for _, cmdline := range processesMatching(t, "rate=128K") {
			for _, v := range vms {
				if strings.Contains(cmdline, "/"+v+"/") {
					reading = v
					return true
				}
			}
		}
		return false
	})
	var before []blockmap.Point
	if !api.getJSON("/api/v1/points?vm="+reading, &before) {
		t.Fatal("points before SIGTERM")
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop within 30s of SIGTERM:\n%s", logs.String())
	}
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(mounts, []byte(" "+labCfg.Mount+" ")) {
		t.Errorf("%s still mounted after serve stopped", labCfg.Mount)
	}
	for _, v := range vms {
		if snaps := serveLabSnapshots(t, labCfg.VCenters[0], v); len(snaps) > 0 {
			t.Errorf("snapshots left on %s after SIGTERM: %v", v, snaps)
		}
	}
	if left := processesMatching(t, "rate=128K"); len(left) > 0 {
		t.Errorf("NBD servers left after SIGTERM: %v", left)
	}
	// No partial point: the interrupted VM has the points it had, the
	// repository verifies and holds no leftovers, the job log says why.
	out := mustCairn(t, "--repo", repo, "points", "--vm", reading, "--json")
	var after struct {
		VMs []struct {
			Points []blockmap.Point `json:"points"`
		} `json:"vms"`
	}
	if err := json.Unmarshal([]byte(out), &after); err != nil || len(after.VMs) != 1 {
		t.Fatalf("points --json: %v\n%s", err, out)
	}
	if len(after.VMs[0].Points) != len(before) || after.VMs[0].Points[len(before)-1].ID != before[len(before)-1].ID {
		t.Errorf("%s: %d points before SIGTERM, %d after", reading, len(before), len(after.VMs[0].Points))
	}
	mustCairn(t, "--repo", repo, "verify")
	if status := mustCairn(t, "--repo", repo, "status"); !strings.Contains(status, "not running") {
		t.Errorf("cairn status after serve stopped:\n%s", status)
	}
	// A serve.json whose server does not answer (killed, pid reused):
	// status and jobs say so and show the repository.
	if err := os.WriteFile(filepath.Join(repo, serve.ServeFileName), []byte(`{"pid":1,"listen":"127.0.0.1:1","started":"2026-11-23T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := runCairn(t, nil, "--repo", repo, "status"); res.code != 0 || !strings.Contains(res.stderr, "showing the repository") || !strings.Contains(res.stdout, reading) {
		t.Errorf("cairn status with a dead serve.json: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// A backup the stopping server aborted is cancelled, not failed.
	if hist := mustCairn(t, "--repo", repo, "jobs", "--last", "4"); !strings.Contains(hist, "cancelled") || !strings.Contains(hist, "context canceled") {
		t.Errorf("job log does not record the aborted backup as cancelled:\n%s", hist)
	}
}

// processesMatching lists the command lines of processes whose command
// line contains s.
func processesMatching(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(raw), "\x00", " ")
		if strings.Contains(cmdline, s) && !strings.Contains(cmdline, "go test") {
			out = append(out, cmdline)
		}
	}
	return out
}

// serveLabSnapshots lists the snapshots of vm in the lab's vCenter.
func serveLabSnapshots(t *testing.T, vc lab.VCenterConfig, vm string) []string {
	t.Helper()
	creds, err := vsphere.LoadCredentials(vc.Credentials)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := vsphere.Connect(ctx, vsphere.ConnectOptions{URL: vc.URL, Credentials: creds, Thumbprint: vc.Thumbprint})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := conn.FindVM(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range v.Snapshots {
		out = append(out, s.Name)
	}
	return out
}

// TestServeBadConfig: `cairn serve` refuses to start with an invalid
// config and names the file, line and reason.
func TestServeBadConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "cairn.yaml")
	bad := "repository: /r\nvcenters:\n  - name: vc\n    url: https://vc/sdk\n    credentials: /c\njobs:\n  - name: j\n    vcenter: vc\n    vms: [a]\n    schedule: often\n"
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCairn(t, nil, "serve", "--config", cfg)
	if res.code == 0 || !strings.Contains(res.stderr, cfg+":10:") || !strings.Contains(res.stderr, "not a duration") {
		t.Fatalf("exit %d, stderr %q: want the file, line 10 and the reason", res.code, res.stderr)
	}
}

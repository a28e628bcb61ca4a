package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/lab"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
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

// serveGetJSON GETs url into v; it returns false while the server is not up.
func serveGetJSON(url string, v any) bool {
	resp, err := http.Get(url)
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

// TestServeLab runs `cairn serve` against `cairn lab`, both as child
// processes: scheduled points appear in the API and the mount, a job
// requested through the API runs, SIGHUP with a broken config keeps the
// server up, and SIGTERM stops it cleanly with the mount released.
func TestServeLab(t *testing.T) {
	testutil.RequireFUSE(t)
	bin := buildCairn(t)
	dir := t.TempDir()
	labDir := filepath.Join(dir, "lab")
	listen := serveFreeAddr(t)
	var labErr serveLogBuffer
	_, labExited := serveStartChild(t, bin, &labErr, "lab", "--dir", labDir, "--vms", "1", "--interval", "2s",
		"--disk-size-mib", "64", "--schedule", "3s", "--serve-listen", listen)
	labCfg := waitLabConfig(t, filepath.Join(labDir, "cairn.yaml"), labExited, nil)
	mustCairn(t, "--repo", labCfg.Repository, "init")

	// serve reads its own copy, so the test can break it later.
	raw, err := os.ReadFile(filepath.Join(labDir, "cairn.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Keep two points, so retention has something to delete.
	kept := bytes.Replace(raw, []byte("keep_last: 20"), []byte("keep_last: 2"), 1)
	if bytes.Equal(kept, raw) {
		t.Fatalf("no keep_last: 20 in the lab's cairn.yaml:\n%s", raw)
	}
	raw = kept
	cfgFile := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs serveLogBuffer
	srv, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	base := "http://" + listen
	vm := "lab-vm-1"

	var pts []blockmap.Point
	serveWaitFor(t, "two points of "+vm, exited, &logs, func() bool {
		pts = nil
		return serveGetJSON(base+"/api/v1/points?vm="+vm, &pts) && len(pts) >= 2
	})
	info := filepath.Join(labCfg.Mount, vm, "latest", "info.json")
	serveWaitFor(t, info, exited, &logs, func() bool {
		raw, err := os.ReadFile(info)
		var p blockmap.Point
		return err == nil && json.Unmarshal(raw, &p) == nil && p.VM == vm
	})
	if !strings.Contains(logs.String(), "vm="+vm) && !strings.Contains(logs.String(), `"vm":"`+vm+`"`) {
		t.Errorf("serve logs do not name the VM:\n%s", logs.String())
	}

	var vms []serve.VMStatus
	if !serveGetJSON(base+"/api/v1/vms", &vms) || len(vms) != 1 || vms[0].Name != vm || vms[0].Points < 1 || vms[0].Latest == nil {
		t.Errorf("/api/v1/vms: %+v", vms)
	}

	// A backup requested through the API runs.
	resp, err := http.Post(base+"/api/v1/jobs", "application/json", strings.NewReader(fmt.Sprintf(`{"vm":%q}`, vm)))
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
		if !serveGetJSON(base+"/api/v1/jobs", &jobs) {
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
	// Retention: once three or more backups are done and none is running,
	// two points are left and the newest is the last backup's.
	var state string
	serveWaitFor(t, "retention to leave two points", exited, &logs, func() bool {
		var jobs serve.JobsResponse
		pts = nil
		if !serveGetJSON(base+"/api/v1/jobs", &jobs) || !serveGetJSON(base+"/api/v1/points?vm="+vm, &pts) {
			return false
		}
		okRuns, pruned, last := 0, 0, serve.RunRecord{}
		for _, r := range jobs.Runs {
			if r.State == serve.StateRunning || r.State == serve.StateQueued {
				return false
			}
			if r.State == serve.StateOK {
				okRuns, pruned = okRuns+1, pruned+r.Pruned
				if r.End.After(last.End) {
					last = r
				}
			}
		}
		state = fmt.Sprintf("%d successful runs pruned %d points; points %d, newest run's point %s", okRuns, pruned, len(pts), last.Point)
		return okRuns >= 3 && pruned > 0 && len(pts) == 2 && pts[1].ID == last.Point
	})
	t.Log(state)
	resp, err = http.Post(base+"/api/v1/jobs", "application/json", strings.NewReader(`{"vm":"no-such-vm"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST for an unknown VM: status %d, want 404", resp.StatusCode)
	}

	// Metrics name the VM's points.
	mresp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{`cairn_points{vm="lab-vm-1"}`, `cairn_last_success_timestamp_seconds{vm="lab-vm-1"}`, "cairn_repository_bytes"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
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

	// SIGHUP with a valid config again: it is taken.
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	serveWaitFor(t, "the valid config to be reloaded", exited, &logs, func() bool {
		return strings.Contains(logs.String(), "configuration reloaded")
	})

	// SIGTERM while a requested backup runs (or, if it was quick, after it
	// ended): exit 0, no mount, no snapshot left on the VM, and the
	// repository verifies (no partial point).
	resp, err = http.Post(base+"/api/v1/jobs", "application/json", strings.NewReader(fmt.Sprintf(`{"vm":%q}`, vm)))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&accepted); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("second POST /api/v1/jobs: status %d, %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	serveWaitFor(t, "the second API run to start", exited, &logs, func() bool {
		var jobs serve.JobsResponse
		if !serveGetJSON(base+"/api/v1/jobs", &jobs) {
			return false
		}
		for _, r := range jobs.Runs {
			if r.ID == accepted.ID && r.State != serve.StateQueued {
				t.Logf("SIGTERM with the API run %s", r.State)
				return true
			}
		}
		return false
	})
	// SIGTERM: exit 0 and no mount left.
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
	if snaps := serveLabSnapshots(t, labCfg.VCenters[0], vm); len(snaps) > 0 {
		t.Errorf("snapshots left on %s after SIGTERM: %v", vm, snaps)
	}
	mustCairn(t, "--repo", labCfg.Repository, "verify")
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

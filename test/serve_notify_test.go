package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// notifyHook is a webhook target run by the test: it keeps every payload
// cairn serve posts.
type notifyHook struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []notify.Payload
	errs []string
}

func newNotifyHook(t *testing.T) *notifyHook {
	h := &notifyHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p notify.Payload
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := json.Unmarshal(b, &p); err != nil || r.Header.Get("Content-Type") != "application/json" {
			h.errs = append(h.errs, fmt.Sprintf("%v: %s", err, b))
		}
		h.got = append(h.got, p)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *notifyHook) payloads() []notify.Payload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notify.Payload(nil), h.got...)
}

func (h *notifyHook) kinds() []string {
	var out []string
	for _, p := range h.payloads() {
		out = append(out, string(p.Kind))
	}
	return out
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestServeNotifyBackupFailure: a VM whose every backup fails (its NBD
// server cannot start) gives exactly one failure notification, after its
// retries, to a webhook and to a real SMTP server; a target that is down
// is retried, given up and shown by cairn status, and none of it changes
// the run's outcome.
func TestServeNotifyBackupFailure(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	bin := buildCairn(t)
	smtp := testutil.StartSMTP(t, testutil.SMTPOptions{})
	hook := newNotifyHook(t)
	lb := startServeLab(t, bin, 1, "1h")
	vc := lb.cfg.VCenters[0]
	cfg := fmt.Sprintf(`repository: %s
listen: %s
vcenters:
  - name: lab
    url: %s
    credentials: %s
    thumbprint: "%s"
jobs:
  - name: broken
    vcenter: lab
    vms: [lab-vm-1]
    schedule: 1h
    transports: [nbd]
    nbd_command: "false -k {socket} {disk_local_path}"
    retries: 2
    retry_delay: 1s
notify:
  retries: 1
  retry_delay: 1s
  targets:
    - name: hook
      webhook: {url: "%s/cairn"}
    - name: mail
      email: {server: "%s", tls: none, from: cairn@backup.test, to: [ops@example.test]}
    - name: down
      webhook: {url: "http://%s/"}
`, lb.cfg.Repository, lb.listen, vc.URL, vc.Credentials, vc.Thumbprint, hook.srv.URL, smtp.Addr, closedAddr(t))
	file := lb.writeConfig(t, []byte(cfg))
	var logs serveLogBuffer
	_, exited := serveStartChild(t, bin, &logs, "serve", "--config", file)
	api := serveAPI{base: "http://" + lb.listen, repo: lb.cfg.Repository}

	var st serve.Status
	serveWaitFor(t, "the down target to be given up", exited, &logs, func() bool {
		st = serve.Status{}
		return api.getJSON("/api/v1/status", &st) && len(st.Notify) == 3 && st.Notify[2].Failed == 1 &&
			st.Notify[0].Sent == 1 && st.Notify[1].Sent == 1
	})
	var jobs serve.JobsResponse
	if !api.getJSON("/api/v1/jobs", &jobs) || len(jobs.Runs) != 1 || jobs.Runs[0].State != serve.StateFailed || jobs.Runs[0].Attempts != 3 {
		t.Fatalf("runs %+v", jobs.Runs)
	}
	got := hook.payloads()
	if len(got) != 1 || len(hook.errs) > 0 {
		t.Fatalf("webhook got %+v (%v), want one backup_failed", got, hook.errs)
	}
	p := got[0]
	host, _ := os.Hostname()
	if p.Schema != notify.SchemaVersion || p.Kind != notify.BackupFailed || p.Severity != notify.Failure || p.Job != "broken" || p.VM != "lab-vm-1" ||
		p.Attempts != 3 || p.Error == "" || p.Host != host || p.Time.IsZero() || p.Details["run"] != jobs.Runs[0].ID {
		t.Errorf("payload %+v", p)
	}
	msgs := smtp.Messages(t)
	if len(msgs) != 1 || msgs[0].Msg.Header.Get("X-Cairn-Kind") != "backup_failed" || msgs[0].To[0] != "ops@example.test" ||
		!strings.Contains(msgs[0].Msg.Header.Get("Subject"), "FAILURE: backup of lab-vm-1 failed (job broken)") {
		t.Errorf("mail %+v", msgs)
	}
	down := st.Notify[2]
	if !strings.Contains(down.LastError, "connection refused") || down.LastErrorKind != notify.BackupFailed {
		t.Errorf("down target %+v", down)
	}
	out := mustCairn(t, "--repo", lb.cfg.Repository, "status")
	if !strings.Contains(out, "NOTIFY TARGET") || !strings.Contains(out, "connection refused") {
		t.Errorf("cairn status does not show the failed target:\n%s", out)
	}
	resp, err := api.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`cairn_notify_failures_total{target="down"} 1`, `cairn_notify_sent_total{target="hook"} 1`, `cairn_notify_sent_total{target="mail"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(logs.String(), "notification given up"); n != 1 {
		t.Errorf("%d give-ups logged, want 1:\n%s", n, logs.String())
	}
}

// TestServeNotifyRPO: a job without vCenter watching an imported VM's
// RPO alerts once when its newest point grows older than rpo:, stays
// quiet while the breach lasts, and tells the recovery once when a new
// import lands; a block damaged on disk is told by the repository verify;
// the report reaches the report target only.
func TestServeNotifyRPO(t *testing.T) {
	bin := buildCairn(t)
	hook := newNotifyHook(t)
	reports := newNotifyHook(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(dir, "vda.img")
	if err := os.WriteFile(img, append(make([]byte, 1<<20), []byte("cairn rpo")...), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "import", "--vm", "kvm-1", "--disk", "vda", img)
	listen := serveFreeAddr(t)
	cfg := fmt.Sprintf(`repository: %s
listen: %s
jobs:
  - name: kvm
    vms: [kvm-*]
    rpo: 4s
notify:
  rpo_check: 1s
  report: 2s
  targets:
    - webhook: {url: "%s"}
    - name: daily
      webhook: {url: "%s", format: json}
      on: [report]
`, repo, listen, hook.srv.URL, reports.srv.URL)
	file := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs serveLogBuffer
	_, exited := serveStartChild(t, bin, &logs, "serve", "--config", file)
	serveWaitFor(t, "the RPO breach", exited, &logs, func() bool { return len(hook.payloads()) >= 1 })
	// Several checks run while the breach lasts: none may tell it again.
	time.Sleep(3 * time.Second)
	if k := hook.kinds(); len(k) != 1 || k[0] != string(notify.RPOMissed) {
		t.Fatalf("during the breach: %v, want one rpo_missed", k)
	}
	api := serveAPI{base: "http://" + listen, repo: repo}
	if resp, err := api.get("/metrics"); err != nil {
		t.Fatal(err)
	} else {
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(m), "cairn_rpo_breaches 1") {
			t.Errorf("/metrics does not count the breach")
		}
	}
	p := hook.payloads()[0]
	if p.VM != "kvm-1" || p.Job != "kvm" || p.Severity != notify.Failure || p.Details["rpo"] != "4s" || !strings.Contains(p.Error, "more than the RPO of 4s") {
		t.Errorf("breach payload %+v", p)
	}
	mustCairn(t, "--repo", repo, "import", "--vm", "kvm-1", "--disk", "vda", img)
	serveWaitFor(t, "the RPO recovery", exited, &logs, func() bool { return len(hook.payloads()) >= 2 })
	k := hook.kinds()
	if k[1] != string(notify.RPORecovered) {
		t.Fatalf("after the import: %v, want rpo_missed, rpo_recovered", k)
	}
	if r := hook.payloads()[1]; r.Severity != notify.OK || r.VM != "kvm-1" || r.Point == "" || r.Point == p.Point {
		t.Errorf("recovery payload %+v (breach point %s)", r, p.Point)
	}
	// A damaged block found by the repository verify is told.
	imgs, _ := filepath.Glob(filepath.Join(repo, "images", "*", "*.img"))
	damaged := false
	for _, f := range imgs {
		fh, err := os.OpenFile(f, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 9)
		if n, _ := fh.ReadAt(b, 1<<20); n == 9 && string(b) == "cairn rpo" {
			_, err = fh.WriteAt([]byte("CAIRN"), 1<<20)
			damaged = err == nil
		}
		fh.Close()
	}
	if !damaged {
		t.Fatalf("no delta image holds the test's data at 1 MiB: %v", imgs)
	}
	resp, err := api.post("/api/v1/verify", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/v1/verify: %v %v", resp, err)
	}
	resp.Body.Close()
	var dmg *notify.Payload
	serveWaitFor(t, "the verify damage notification", exited, &logs, func() bool {
		for _, p := range hook.payloads() {
			if p.Kind == notify.VerifyDamage {
				dmg = &p
				return true
			}
		}
		return false
	})
	if dmg.Severity != notify.Failure || dmg.VM != "kvm-1" || !strings.Contains(dmg.Error, "do not match their hash (kvm-1: 1)") {
		t.Errorf("verify damage payload %+v", dmg)
	}

	// The report target got reports only, each listing the VM.
	rep := reports.payloads()
	if len(rep) == 0 {
		t.Fatal("no report was sent")
	}
	for _, r := range rep {
		if r.Kind != notify.Report || len(r.Report) != 1 || r.Report[0].VM != "kvm-1" || r.Report[0].Points < 1 || r.Report[0].LastResult != "ok" || r.Report[0].StoredBytes <= 0 {
			t.Errorf("report %+v", r)
		}
	}
	for _, p := range hook.payloads() {
		if p.Kind == notify.Report {
			t.Errorf("a report reached a target without on: [report]")
		}
	}
}

// TestNotifyTestCommand: cairn notify test reaches each target of the
// config, and names the fix of one that fails (an SMTP server whose
// certificate is not trusted: ca_file).
func TestNotifyTestCommand(t *testing.T) {
	buildCairn(t)
	certs := t.TempDir()
	testutil.WriteTLSCerts(t, certs)
	smtp := testutil.StartSMTP(t, testutil.SMTPOptions{StartTLS: true, CertFile: filepath.Join(certs, "server-cert.pem"), KeyFile: filepath.Join(certs, "server-key.pem")})
	hook := newNotifyHook(t)
	dir := t.TempDir()
	server := strings.Replace(smtp.Addr, "127.0.0.1", "localhost", 1)
	cfg := fmt.Sprintf(`repository: %s
notify:
  targets:
    - name: hook
      webhook: {url: "%s"}
    - name: mail-untrusted
      email: {server: "%s", from: cairn@backup.test, to: [ops@example.test]}
    - name: mail
      email: {server: "%s", ca_file: %s, from: cairn@backup.test, to: [ops@example.test]}
`, filepath.Join(dir, "repo"), hook.srv.URL, server, server, filepath.Join(certs, "ca-cert.pem"))
	file := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCairn(t, nil, "notify", "test", "--config", file)
	if res.code != 1 {
		t.Fatalf("exit %d, want 1: %s %s", res.code, res.stdout, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "hook") || !strings.Contains(lines[0], "ok") ||
		!strings.Contains(lines[1], "mail-untrusted") || !strings.Contains(lines[1], "FAILED") || !strings.Contains(lines[1], "not trusted") ||
		!strings.Contains(lines[2], "fix:") || !strings.Contains(lines[2], "ca_file") || !strings.Contains(lines[3], "mail ") || !strings.Contains(lines[3], "ok") {
		t.Errorf("output:\n%s", res.stdout)
	}
	if !strings.Contains(res.stderr, "1 of 3 targets failed") {
		t.Errorf("stderr %s", res.stderr)
	}
	if k := hook.kinds(); len(k) != 1 || k[0] != string(notify.Test) {
		t.Errorf("webhook got %v", k)
	}
	if m := smtp.Messages(t); len(m) != 1 || !m[0].TLS || m[0].Msg.Header.Get("X-Cairn-Kind") != "test" {
		t.Errorf("mail %+v", m)
	}
}

// TestServeNotifyReplicateFailed: a replication whose object store is
// down is told once per run, naming the job, the remote and the cause;
// a boot check that cannot run (an imported point without firmware) too.
func TestServeNotifyReplicateFailed(t *testing.T) {
	bin := buildCairn(t)
	hook := newNotifyHook(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(dir, "vda.img")
	if err := os.WriteFile(img, []byte(strings.Repeat("cairn replicate ", 8192)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "import", "--vm", "kvm-1", "--disk", "vda", img)
	creds, pass := filepath.Join(dir, "creds"), filepath.Join(dir, "pass")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = a\naws_secret_access_key = b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte("a long offsite passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "remote", "add", "offsite", "--endpoint", "http://"+closedAddr(t), "--bucket", "cairn-down",
		"--credentials", creds, "--passphrase-file", pass)
	listen := serveFreeAddr(t)
	cfg := fmt.Sprintf(`repository: %s
listen: %s
jobs:
  - name: kvm-offsite
    vms: [kvm-*]
    replicate:
      remote: offsite
      schedule: 1h
    boot_check:
      schedule: 1h                 # no firmware: for an imported point without a VM configuration
notify:
  targets:
    - webhook: {url: "%s"}
`, repo, listen, hook.srv.URL)
	file := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs serveLogBuffer
	_, exited := serveStartChild(t, bin, &logs, "serve", "--config", file)
	api := serveAPI{base: "http://" + listen, repo: repo}
	serveWaitFor(t, "the failed replication", exited, &logs, func() bool {
		var rs struct {
			Replications []serve.ReplicationRecord `json:"replications"`
		}
		return api.getJSON("/api/v1/replications", &rs) && len(rs.Replications) == 1 && rs.Replications[0].State == serve.StateFailed &&
			len(hook.payloads()) == 2
	})
	byKind := map[notify.Kind]notify.Payload{}
	for _, p := range hook.payloads() {
		byKind[p.Kind] = p
	}
	b := byKind[notify.BootCheckFailed]
	if b.VM != "kvm-1" || b.Job != "kvm-offsite" || b.Point == "" || !strings.Contains(b.Error, "firmware: bios or efi") {
		t.Errorf("boot check payload %+v", b)
	}
	p := byKind[notify.ReplicateFailed]
	if p.Kind != notify.ReplicateFailed || p.Severity != notify.Failure || p.Job != "kvm-offsite" || p.Remote != "offsite" ||
		!strings.Contains(p.Error, "connection refused") || p.Title != "FAILURE: replication to offsite failed (job kvm-offsite)" {
		t.Errorf("payload %+v", p)
	}
}

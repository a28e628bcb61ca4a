package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/blockmap"
)

// payloadHook is a webhook recording the payloads it gets.
type payloadHook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []notify.Payload
}

func newPayloadHook(t *testing.T) *payloadHook {
	h := &payloadHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p notify.Payload
		_ = json.Unmarshal(b, &p)
		h.mu.Lock()
		h.got = append(h.got, p)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// kinds lists the kinds received, in order.
func (h *payloadHook) kinds() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var k []string
	for _, p := range h.got {
		k = append(k, string(p.Kind))
	}
	return strings.Join(k, " ")
}

func (h *payloadHook) payloads() []notify.Payload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notify.Payload(nil), h.got...)
}

// waitKinds waits until the hook has received want (kinds in order).
func (h *payloadHook) waitKinds(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for h.kinds() != want {
		if time.Now().After(deadline) {
			t.Fatalf("notifications %q, want %q", h.kinds(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runUntilStopped runs cfg on repo until stop is called, which waits
// for Run to return (and so for the notifier to deliver what it held).
func runUntilStopped(t *testing.T, repo string, cfg *Config) (s *Server, stop func()) {
	t.Helper()
	return runUntilStoppedLog(t, repo, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// runUntilStoppedLog is runUntilStopped logging to log.
func runUntilStoppedLog(t *testing.T, repo string, cfg *Config, log *slog.Logger) (s *Server, stop func()) {
	t.Helper()
	s, err := New(cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := ReadServeFile(repo); err == nil && (cfg.Notify == nil || s.rpoTrackerReady()) {
			return s, stop
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start")
		}
	}
}

// withRepo opens repo (no server running), calls f and closes it.
func withRepo(t *testing.T, repo string, f func(r *blockmap.Repo)) {
	t.Helper()
	r, err := blockmap.Open(context.Background(), repo, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f(r)
}

// TestRPOBreachAcrossRestarts: an RPO breach is told once, not again by
// a restarted serve while it lasts, and its end, which came while serve
// was stopped, is told by the next one. The state is a 0600 file of the
// repository.
func TestRPOBreachAcrossRestarts(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	withRepo(t, repo, func(r *blockmap.Repo) { writeTestPoint(t, r, "imp-1", time.Now().Add(-2*time.Hour), 1) })
	h := newPayloadHook(t)
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
jobs:
  - name: imp
    vms: [imp-1]
    rpo: 1h
notify:
  rpo_check: 1h
  targets:
    - webhook: {url: %s}
`, repo, h.srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	// 1: the breach is told (by the check at start)
	_, stop := runUntilStopped(t, repo, cfg)
	h.waitKinds(t, "rpo_missed")
	stop()
	// 2: a restart while it lasts tells nothing (stop delivers all queued)
	s, stop := runUntilStopped(t, repo, cfg)
	s.checkRPO(context.Background(), cfg)
	stop()
	if got := h.kinds(); got != "rpo_missed" {
		t.Fatalf("after a restart during the breach: %q, want only the first rpo_missed", got)
	}
	// 3: a point made while serve is down ends it: the next start tells so
	var p blockmap.Point
	withRepo(t, repo, func(r *blockmap.Repo) { p = writeTestPoint(t, r, "imp-1", time.Now(), 2) })
	_, stop = runUntilStopped(t, repo, cfg)
	h.waitKinds(t, "rpo_missed rpo_recovered")
	stop()
	got := h.payloads()[1]
	if got.Severity != notify.OK || got.Job != "imp" || got.VM != "imp-1" || got.Point != p.ID || got.Details["rpo"] != "1h0m0s" || got.Details["breach_told"] == "" {
		t.Errorf("rpo_recovered %+v", got)
	}
	fi, err := os.Stat(filepath.Join(repo, NotifyStateFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v", fi, err)
	}
}

// TestNotifyStateDedupAcrossRestarts: a backup failure told before a
// reload and a restart is not told again within repeat_after, and a
// success after the restart is told as its recovery.
func TestNotifyStateDedupAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	h := newPayloadHook(t)
	cfg := &Config{Notify: &NotifyConfig{Targets: []notify.TargetConfig{{Name: "w", Webhook: &notify.WebhookConfig{URL: h.srv.URL}}}}}
	fail := notify.Event{Kind: notify.BackupFailed, Severity: notify.Failure, Job: "j", VM: "v", Error: "snapshot: refused"}
	for i := range 2 {
		s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		s.loadNotifyState(dir)
		s.startNotifier(cfg)
		s.tell(fail)
		if i == 0 { // a reload
			s.startNotifier(cfg)
			s.tell(fail)
		}
		if i == 1 {
			s.tell(notify.Event{Kind: notify.BackupOK, Severity: notify.Info, Job: "j", VM: "v", Point: "p1"})
		}
		s.stopNotifier()
	}
	if got := h.kinds(); got != "backup_failed backup_recovered" {
		t.Errorf("told %q, want the failure once and its recovery", got)
	}
}

// TestNotifyStateCorrupt: a corrupt state file is logged and ignored
// (serve starts; the next state replaces it).
func TestNotifyStateCorrupt(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, NotifyStateFileName)
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	s.loadNotifyState(dir)
	if !strings.Contains(logs.String(), "cannot read what notifications told") || !strings.Contains(logs.String(), file) {
		t.Errorf("log: %s", logs.String())
	}
	h := newPayloadHook(t)
	s.startNotifier(&Config{Notify: &NotifyConfig{Targets: []notify.TargetConfig{{Name: "w", Webhook: &notify.WebhookConfig{URL: h.srv.URL}}}}})
	s.tell(notify.Event{Kind: notify.VerifyDamage, Severity: notify.Failure, Error: "x"})
	s.stopNotifier()
	var st notify.State
	data, _ := os.ReadFile(file)
	if err := json.Unmarshal(data, &st); err != nil || len(st.Sent) != 1 || h.kinds() != "verify_damage" {
		t.Errorf("state %s (%v), told %q", data, err, h.kinds())
	}
}

// TestNotifyStateQuietBackups: backups that succeed leave the state file
// as it is (it is not rewritten at every backup of every VM).
func TestNotifyStateQuietBackups(t *testing.T) {
	dir := t.TempDir()
	h := newPayloadHook(t)
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.loadNotifyState(dir)
	s.startNotifier(&Config{Notify: &NotifyConfig{Targets: []notify.TargetConfig{{Name: "w", Webhook: &notify.WebhookConfig{URL: h.srv.URL}}}}})
	defer s.stopNotifier()
	s.tell(notify.Event{Kind: notify.BackupOK, Severity: notify.Info, Job: "j", VM: "v", Point: "p1"})
	file := filepath.Join(dir, NotifyStateFileName)
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		s.tell(notify.Event{Kind: notify.BackupOK, Severity: notify.Info, Job: "j", VM: fmt.Sprint("v", i), Point: fmt.Sprint("p", i)})
	}
	after, err := os.Stat(file)
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("the state file was rewritten by backups that succeeded")
	}
	if data, _ := os.ReadFile(file); bytes.Contains(data, []byte("backup_ok")) {
		t.Errorf("state keeps backup_ok events: %s", data)
	}
}

// rpoTrackerReady reports whether Run has started the server's
// notifications (serve.json may be written before, and a test that calls
// checkRPO itself must not run ahead of them).
func (s *Server) rpoTrackerReady() bool {
	s.note.mu.Lock()
	defer s.note.mu.Unlock()
	return s.note.rpo != nil
}

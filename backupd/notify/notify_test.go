package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// hook is a real HTTP server recording the requests it gets; status
// answers the Nth request (1-based).
type hook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	hdrs   []http.Header
	got    chan struct{}
}

func newHook(t *testing.T, status func(n int) int) *hook {
	h := &hook{got: make(chan struct{}, 100)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, b)
		h.hdrs = append(h.hdrs, r.Header.Clone())
		n := len(h.bodies)
		h.mu.Unlock()
		w.WriteHeader(status(n))
		h.got <- struct{}{}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func secretFile(t *testing.T, content string) string {
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func closeNotifier(t *testing.T, n *Notifier) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Close(ctx)
}

// TestWebhookPayload: the JSON a webhook gets carries the documented
// schema, the bearer token from its file and the configured headers.
func TestWebhookPayload(t *testing.T) {
	h := newHook(t, func(int) int { return http.StatusNoContent })
	tok := secretFile(t, "s3cr3t-token")
	n, err := New(Options{Host: "backup1", Targets: []TargetConfig{{Name: "ops", Webhook: &WebhookConfig{
		URL: h.srv.URL + "/hook", TokenFile: tok, Headers: map[string]string{"X-Team": "infra"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeNotifier(t, n)
	when := time.Date(2026, 12, 6, 3, 4, 5, 0, time.UTC)
	n.Notify(Event{Kind: BackupFailed, Severity: Failure, Time: when, Job: "nightly", VM: "web-1", Error: "snapshot: boom", Attempts: 3})
	waitFor(t, "the webhook", func() bool { return h.requests() == 1 })
	var raw map[string]any
	if err := json.Unmarshal(h.bodies[0], &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"schema": "cairn.notify/v1", "kind": "backup_failed", "severity": "failure", "time": "2026-12-06T03:04:05Z",
		"host": "backup1", "job": "nightly", "vm": "web-1", "error": "snapshot: boom", "attempts": float64(3)}
	for k, v := range want {
		if raw[k] != v {
			t.Errorf("payload %s = %v, want %v (%s)", k, raw[k], v, h.bodies[0])
		}
	}
	if title, _ := raw["title"].(string); !strings.HasPrefix(title, "FAILURE: ") {
		t.Errorf("title %q", title)
	}
	if got := h.hdrs[0].Get("Authorization"); got != "Bearer s3cr3t-token" {
		t.Errorf("Authorization %q", got)
	}
	if h.hdrs[0].Get("X-Team") != "infra" || h.hdrs[0].Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h.hdrs[0])
	}
	waitFor(t, "status", func() bool { return n.Status()[0].Sent == 1 })
}

// TestWebhookDownGivesUp: a target that keeps failing is retried
// Retries times with backoff, then given up and recorded; Notify never
// waits for it.
func TestWebhookDownGivesUp(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	h := newHook(t, func(n int) int {
		if n == 1 {
			<-release // the first delivery hangs until Notify has returned
		}
		return http.StatusServiceUnavailable
	})
	var logs bytes.Buffer
	n, err := New(Options{Retries: 2, RetryDelay: 5 * time.Millisecond, Host: "h",
		Logger:  slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)),
		Targets: []TargetConfig{{Name: "down", Webhook: &WebhookConfig{URL: h.srv.URL}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeNotifier(t, n)
	n.Notify(Event{Kind: ReplicateFailed, Severity: Failure, Job: "j", Remote: "offsite", Error: "403"})
	once.Do(func() { close(release) }) // reached only because Notify returned
	waitFor(t, "the give-up", func() bool { return n.Status()[0].Failed == 1 })
	if got := h.requests(); got != 3 {
		t.Errorf("%d requests, want 3 (1 + 2 retries)", got)
	}
	st := n.Status()[0]
	if st.Sent != 0 || !strings.Contains(st.LastError, "503") || st.LastErrorKind != ReplicateFailed {
		t.Errorf("status %+v", st)
	}
	if !strings.Contains(logs.String(), "notification given up") {
		t.Errorf("no give-up logged:\n%s", logs.String())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestWebhookRecoversWithinRetries: a target down for two attempts gets
// the message on the third.
func TestWebhookRecoversWithinRetries(t *testing.T) {
	h := newHook(t, func(n int) int {
		if n < 3 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	n, err := New(Options{Retries: 3, RetryDelay: 5 * time.Millisecond, Targets: []TargetConfig{{Name: "w", Webhook: &WebhookConfig{URL: h.srv.URL}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeNotifier(t, n)
	n.Notify(Event{Kind: BootCheckFailed, Severity: Failure, VM: "v", Point: "p1"})
	waitFor(t, "delivery", func() bool { return n.Status()[0].Sent == 1 })
	if st := n.Status()[0]; st.Failed != 0 || h.requests() != 3 {
		t.Errorf("status %+v after %d requests", st, h.requests())
	}
}

// TestWebhookRejectedNotRetried: a 4xx answer is permanent.
func TestWebhookRejectedNotRetried(t *testing.T) {
	h := newHook(t, func(int) int { return http.StatusUnauthorized })
	n, err := New(Options{Retries: 3, RetryDelay: 5 * time.Millisecond, Targets: []TargetConfig{{Name: "w", Webhook: &WebhookConfig{URL: h.srv.URL}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeNotifier(t, n)
	n.Notify(Event{Kind: VerifyDamage, Severity: Failure, Error: "bad blocks"})
	waitFor(t, "give-up", func() bool { return n.Status()[0].Failed == 1 })
	if h.requests() != 1 {
		t.Errorf("%d requests for a 401, want 1", h.requests())
	}
}

// TestWebhookSlack: format slack posts {"text"}.
func TestWebhookSlack(t *testing.T) {
	h := newHook(t, func(int) int { return http.StatusOK })
	res := SendTest(context.Background(), []TargetConfig{{Name: "chat", Webhook: &WebhookConfig{URL: h.srv.URL, Format: FormatSlack}}}, "hostx", 5*time.Second)
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	var m map[string]string
	if err := json.Unmarshal(h.bodies[0], &m); err != nil || len(m) != 1 || !strings.Contains(m["text"], "hostx") || !strings.Contains(m["text"], "test") {
		t.Errorf("slack body %s (%v)", h.bodies[0], err)
	}
}

// TestSendTestAdvice: a refused connection and an unreadable secret are
// named with their fix; a secret URL stays out of the error.
func TestSendTestAdvice(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	urlFile := secretFile(t, "http://"+addr+"/services/T000/B000/XXXXsecretXXXX")
	res := SendTest(context.Background(), []TargetConfig{
		{Name: "refused", Webhook: &WebhookConfig{URLFile: urlFile}},
		{Name: "nosecret", Webhook: &WebhookConfig{URL: "http://" + addr, TokenFile: "/nonexistent/token"}},
		{Name: "mail", Email: &EmailConfig{Server: addr, TLS: TLSNone, From: "a@b", To: []string{"c@d"}}},
	}, "h", 5*time.Second)
	if !errors.Is(res[0].Err, ErrRefused) || !strings.Contains(res[0].Advice, "port") {
		t.Errorf("refused: %v / %q", res[0].Err, res[0].Advice)
	}
	if strings.Contains(res[0].Err.Error(), "XXXXsecretXXXX") {
		t.Errorf("the secret URL is in the error: %v", res[0].Err)
	}
	if !errors.Is(res[1].Err, ErrSecret) || res[1].Advice == "" {
		t.Errorf("missing token file: %v / %q", res[1].Err, res[1].Advice)
	}
	if !errors.Is(res[2].Err, ErrRefused) {
		t.Errorf("email refused: %v", res[2].Err)
	}
}

// TestDeduplication: an equal event within RepeatAfter is sent once; a
// success after a told failure sends one recovery, and the failure is
// told again if it comes back.
func TestDeduplication(t *testing.T) {
	h := newHook(t, func(int) int { return http.StatusOK })
	n, err := New(Options{Targets: []TargetConfig{{Name: "w", Webhook: &WebhookConfig{URL: h.srv.URL}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeNotifier(t, n)
	fail := Event{Kind: BackupFailed, Severity: Failure, Job: "j", VM: "v", Error: "nbd: refused"}
	n.Notify(fail)
	n.Notify(fail)
	n.Notify(Event{Kind: BackupOK, Severity: Info, Job: "j", VM: "v", Point: "p2"}) // info: not for this target; recovery is
	n.Notify(fail)
	waitFor(t, "3 deliveries", func() bool { return n.Status()[0].Sent == 3 })
	var kinds []string
	for _, b := range h.bodies {
		var p Payload
		_ = json.Unmarshal(b, &p)
		kinds = append(kinds, string(p.Kind)+"/"+string(p.Severity))
	}
	if strings.Join(kinds, " ") != "backup_failed/failure backup_recovered/ok backup_failed/failure" {
		t.Errorf("delivered %v", kinds)
	}
	if n.Suppressed() != 1 {
		t.Errorf("suppressed %d, want 1", n.Suppressed())
	}
}

func TestFilter(t *testing.T) {
	for _, c := range []struct {
		f    Filter
		ev   Event
		want bool
	}{
		{Filter{}, Event{Kind: BackupFailed, Severity: Failure}, true},
		{Filter{}, Event{Kind: BackupWarning, Severity: Warning}, true},
		{Filter{}, Event{Kind: BackupOK, Severity: Info}, false},
		{Filter{}, Event{Kind: RPORecovered, Severity: OK}, true},
		{Filter{}, Event{Kind: Report, Severity: Info}, false},
		{Filter{On: []Severity{"report"}}, Event{Kind: Report, Severity: Info}, true},
		{Filter{On: []Severity{Warning}}, Event{Kind: BackupFailed, Severity: Failure}, false},
		{Filter{On: []Severity{Info}}, Event{Kind: BackupOK, Severity: Info}, true},
		{Filter{On: []Severity{Info}}, Event{Kind: RPORecovered, Severity: OK}, false},
		{Filter{Jobs: []string{"a"}}, Event{Kind: BackupFailed, Severity: Failure, Job: "b"}, false},
		{Filter{Jobs: []string{"a"}}, Event{Kind: BackupFailed, Severity: Failure, Job: "a"}, true},
		{Filter{Jobs: []string{"a"}}, Event{Kind: VerifyDamage, Severity: Failure}, true},
		{Filter{On: []Severity{Warning}}, Event{Kind: Test, Severity: Info}, true},
	} {
		if got := c.f.Match(c.ev); got != c.want {
			t.Errorf("%+v matches %s/%s: %v, want %v", c.f, c.ev.Kind, c.ev.Severity, got, c.want)
		}
	}
}

// TestRPOTracker: one breach event, none while it lasts, one recovery.
func TestRPOTracker(t *testing.T) {
	tr := NewRPOTracker()
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	obs := func(latest time.Time) []RPOObservation {
		return []RPOObservation{{Job: "j", VM: "v", RPO: time.Hour, Latest: latest, LatestPoint: "p", Watched: t0}}
	}
	steps := []struct {
		now    time.Time
		latest time.Time
		want   Kind
	}{
		{t0.Add(30 * time.Minute), t0, ""},
		{t0.Add(61 * time.Minute), t0, RPOMissed},
		{t0.Add(2 * time.Hour), t0, ""},
		{t0.Add(3 * time.Hour), t0, ""},
		{t0.Add(3 * time.Hour), t0.Add(170 * time.Minute), RPORecovered},
		{t0.Add(220 * time.Minute), t0.Add(170 * time.Minute), ""},
		{t0.Add(4 * time.Hour), t0.Add(170 * time.Minute), RPOMissed},
	}
	for i, s := range steps {
		evs := tr.Observe(s.now, obs(s.latest))
		got := Kind("")
		if len(evs) == 1 {
			got = evs[0].Kind
		}
		if len(evs) > 1 || got != s.want {
			t.Errorf("step %d: events %+v, want %q", i, evs, s.want)
		}
	}
	// A VM without points breaches RPO after Watched+RPO.
	none := []RPOObservation{{Job: "j", VM: "new", RPO: time.Hour, Watched: t0}}
	if evs := tr.Observe(t0.Add(59*time.Minute), none); len(evs) != 0 {
		t.Errorf("early: %+v", evs)
	}
	if evs := tr.Observe(t0.Add(61*time.Minute), none); len(evs) != 1 || evs[0].Kind != RPOMissed || !strings.Contains(evs[0].Error, "no point") {
		t.Errorf("no point: %+v", evs)
	}
}

func emailTarget(srv *testutil.SMTPServer, mod func(*EmailConfig)) []TargetConfig {
	c := &EmailConfig{Server: srv.Addr, TLS: TLSNone, From: "cairn <cairn@backup.example>", To: []string{"ops@example.com", "oncall@example.com"}}
	if mod != nil {
		mod(c)
	}
	return []TargetConfig{{Name: "mail", Email: c}}
}

// TestEmailPlain: a failure reaches a real SMTP server as a message with
// the documented headers and a body naming the VM, job and error.
func TestEmailPlain(t *testing.T) {
	srv := testutil.StartSMTP(t, testutil.SMTPOptions{})
	n, err := New(Options{Host: "backup1", Targets: emailTarget(srv, nil)})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Event{Kind: BackupFailed, Severity: Failure, Job: "nightly", VM: "wéb-1", Error: "snapshot: quiesce timed out", Attempts: 3})
	waitFor(t, "the message", func() bool { return len(srv.Messages(t)) == 1 })
	closeNotifier(t, n)
	m := srv.Messages(t)[0]
	if m.From != "cairn@backup.example" || strings.Join(m.To, ",") != "ops@example.com,oncall@example.com" || m.TLS {
		t.Errorf("envelope %+v", m)
	}
	h := m.Msg.Header
	subj, err := (&mimeDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subj != "[cairn backup1] FAILURE: backup failed wéb-1 (job nightly)" {
		t.Errorf("Subject %q (%v)", subj, err)
	}
	if h.Get("X-Cairn-Kind") != "backup_failed" || h.Get("X-Cairn-Severity") != "failure" || h.Get("To") != "ops@example.com, oncall@example.com" ||
		h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Message-Id") == "" || h.Get("Date") == "" {
		t.Errorf("headers %v", h)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(m.Body)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vm:        wéb-1", "job:       nightly", "error:     snapshot: quiesce timed out", "attempts:  3", "host:      backup1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

// TestEmailTLS: STARTTLS and implicit TLS with a CA file and AUTH from
// a password file; an untrusted certificate and a wrong password are
// named (and the password is never in an error).
func TestEmailTLS(t *testing.T) {
	certs := t.TempDir()
	testutil.WriteTLSCerts(t, certs)
	ca, cert, key := filepath.Join(certs, "ca-cert.pem"), filepath.Join(certs, "server-cert.pem"), filepath.Join(certs, "server-key.pem")
	pw := secretFile(t, "hunter2-pw")
	wrong := secretFile(t, "wrong-pw")
	for _, mode := range []string{TLSStartTLS, TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			srv := testutil.StartSMTP(t, testutil.SMTPOptions{StartTLS: mode == TLSStartTLS, SMTPS: mode == TLSImplicit, CertFile: cert, KeyFile: key, User: "cairn", Password: "hunter2-pw"})
			local := func(c *EmailConfig) {
				c.Server = strings.Replace(srv.Addr, "127.0.0.1", "localhost", 1)
				c.TLS, c.Username = mode, "cairn"
			}
			res := SendTest(context.Background(), emailTarget(srv, func(c *EmailConfig) { local(c); c.CAFile, c.PasswordFile = ca, pw }), "h", 10*time.Second)
			if res[0].Err != nil {
				t.Fatalf("with the CA and the password: %v", res[0].Err)
			}
			msgs := srv.Messages(t)
			if len(msgs) != 1 || !msgs[0].TLS || msgs[0].Auth != "cairn" || msgs[0].Msg.Header.Get("X-Cairn-Kind") != "test" {
				t.Fatalf("delivered %+v", msgs)
			}
			res = SendTest(context.Background(), emailTarget(srv, func(c *EmailConfig) { local(c); c.PasswordFile = pw }), "h", 10*time.Second)
			if !errors.Is(res[0].Err, ErrTLSUntrusted) || !strings.Contains(res[0].Advice, "ca_file") {
				t.Errorf("without the CA: %v / %q", res[0].Err, res[0].Advice)
			}
			res = SendTest(context.Background(), emailTarget(srv, func(c *EmailConfig) { local(c); c.CAFile, c.PasswordFile = ca, wrong }), "h", 10*time.Second)
			if !errors.Is(res[0].Err, ErrAuth) || !strings.Contains(res[0].Advice, "password_file") || strings.Contains(res[0].Err.Error(), "wrong-pw") {
				t.Errorf("wrong password: %v / %q", res[0].Err, res[0].Advice)
			}
			if len(srv.Messages(t)) != 1 {
				t.Errorf("%d messages, want 1", len(srv.Messages(t)))
			}
		})
	}
}

var mimeDecoder = mime.WordDecoder{}

// TestCloseAbandons: Close gives a hanging target until its context
// ends, then abandons what is left (counted as dropped, not failed).
func TestCloseAbandons(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang) // before srv.Close, which waits for the handler
	n, err := New(Options{Targets: []TargetConfig{{Name: "slow", Webhook: &WebhookConfig{URL: srv.URL}}}})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Event{Kind: VerifyDamage, Severity: Failure, Error: "a"})
	n.Notify(Event{Kind: VerifyDamage, Severity: Failure, Error: "b"})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n.Close(ctx)
	if st := n.Status()[0]; st.Dropped != 2 || st.Failed != 0 || st.Sent != 0 {
		t.Errorf("status after Close %+v", st)
	}
	n.Notify(Event{Kind: VerifyDamage, Severity: Failure, Error: "c"}) // after Close: ignored, no panic
}

// TestStateAcrossNotifiers: what a notifier knew, kept as JSON (serve
// does so across restarts and reloads), keeps a new notifier from
// telling a lasting failure again and lets it tell the recovery.
func TestStateAcrossNotifiers(t *testing.T) {
	h := newHook(t, func(int) int { return http.StatusOK })
	targets := []TargetConfig{{Name: "w", Webhook: &WebhookConfig{URL: h.srv.URL}}}
	n1, err := New(Options{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	fail := Event{Kind: BackupFailed, Severity: Failure, Job: "j", VM: "v", Error: "nbd: refused"}
	n1.Notify(fail)
	old := Event{Kind: VerifyDamage, Severity: Failure, Error: "old", Time: time.Now().Add(-13 * time.Hour)}
	n1.Notify(old) // no longer suppresses anything after 12h
	waitFor(t, "2 deliveries", func() bool { return n1.Status()[0].Sent == 2 })
	closeNotifier(t, n1)
	data, err := json.Marshal(n1.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	n2, err := New(Options{Targets: targets, State: &st})
	if err != nil {
		t.Fatal(err)
	}
	defer closeNotifier(t, n2)
	n2.Notify(fail)                                                                 // told already: suppressed
	n2.Notify(Event{Kind: VerifyDamage, Severity: Failure, Error: "old"})           // expired: told
	n2.Notify(Event{Kind: BackupOK, Severity: Info, Job: "j", VM: "v", Point: "p"}) // ends the failure
	waitFor(t, "2 more deliveries", func() bool { return n2.Status()[0].Sent == 2 })
	var kinds []string
	h.mu.Lock()
	for _, b := range h.bodies {
		var p Payload
		_ = json.Unmarshal(b, &p)
		kinds = append(kinds, string(p.Kind))
	}
	h.mu.Unlock()
	if got := strings.Join(kinds, " "); got != "backup_failed verify_damage verify_damage backup_recovered" {
		t.Errorf("delivered %s (state %s)", got, data)
	}
}

// TestRPOTrackerRestore: breaches told by an earlier tracker are not
// told again, their end is; a VM without any point does not recover
// because serve restarted (its Watched moved).
func TestRPOTrackerRestore(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	tr := NewRPOTracker()
	obs := []RPOObservation{
		{Job: "j", VM: "v", RPO: time.Hour, Latest: t0, LatestPoint: "p", Watched: t0},
		{Job: "j", VM: "none", RPO: time.Hour, Watched: t0},
		{Job: "gone", VM: "x", RPO: time.Hour, Watched: t0},
	}
	if evs := tr.Observe(t0.Add(2*time.Hour), obs); len(evs) != 3 {
		t.Fatalf("first tracker: %+v", evs)
	}
	tr2 := NewRPOTracker()
	tr2.Restore(tr.State())
	if _, np := tr.State(); len(np) != 2 || !np[0].Told.Equal(t0) { // none and x: no point since t0
		t.Errorf("watched without a point: %+v", np)
	}
	tr2.Forget(map[string]bool{"j": true})
	if b, np := tr2.State(); tr2.Breached() != 2 || len(np) != 1 {
		t.Errorf("restored and forgotten: %+v %+v", b, np)
	}
	restarted := t0.Add(3 * time.Hour)
	obs2 := []RPOObservation{
		{Job: "j", VM: "v", RPO: time.Hour, Latest: t0, LatestPoint: "p", Watched: restarted},
		{Job: "j", VM: "none", RPO: time.Hour, Watched: restarted},
	}
	if evs := tr2.Observe(restarted.Add(time.Minute), obs2); len(evs) != 0 {
		t.Errorf("after a restart: %+v", evs)
	}
	// A VM without a point whose RPO passed across restarts breaches,
	// however recent the last restart.
	fresh := NewRPOTracker()
	fresh.Restore(nil, []Breach{{Job: "j", VM: "new", Told: t0}})
	evs0 := fresh.Observe(restarted.Add(time.Minute), []RPOObservation{{Job: "j", VM: "new", RPO: time.Hour, Watched: restarted}})
	if len(evs0) != 1 || evs0[0].Kind != RPOMissed || !strings.Contains(evs0[0].Error, "no point at all since 2026-12-06T00:00:00Z") {
		t.Errorf("a VM without a point watched since before the restart: %+v", evs0)
	}
	obs2[0].Latest, obs2[0].LatestPoint = restarted, "p2"
	evs := tr2.Observe(restarted.Add(2*time.Minute), obs2)
	if len(evs) != 1 || evs[0].Kind != RPORecovered || evs[0].VM != "v" {
		t.Errorf("recovery: %+v", evs)
	}
}

// TestEmailAuthMechanisms: the login mechanism is picked from the
// server's EHLO AUTH list: LOGIN where PLAIN is not offered (Microsoft
// 365, Exchange), and a server offering neither is named with what it
// offers. The password is in no error.
func TestEmailAuthMechanisms(t *testing.T) {
	certs := t.TempDir()
	testutil.WriteTLSCerts(t, certs)
	ca, cert, key := filepath.Join(certs, "ca-cert.pem"), filepath.Join(certs, "server-cert.pem"), filepath.Join(certs, "server-key.pem")
	pw := secretFile(t, "hunter2-pw")
	wrong := secretFile(t, "wrong-pw")
	target := func(srv *testutil.SMTPServer, pwFile string) []TargetConfig {
		return emailTarget(srv, func(c *EmailConfig) {
			c.Server = strings.Replace(srv.Addr, "127.0.0.1", "localhost", 1)
			c.TLS, c.Username, c.CAFile, c.PasswordFile = TLSStartTLS, "cairn", ca, pwFile
		})
	}
	opts := testutil.SMTPOptions{StartTLS: true, CertFile: cert, KeyFile: key, User: "cairn", Password: "hunter2-pw"}

	t.Run("login-only", func(t *testing.T) {
		o := opts
		o.AuthExclude = []string{"PLAIN"}
		srv := testutil.StartSMTP(t, o)
		res := SendTest(context.Background(), target(srv, pw), "h", 10*time.Second)
		if res[0].Err != nil {
			t.Fatalf("AUTH LOGIN: %v", res[0].Err)
		}
		if msgs := srv.Messages(t); len(msgs) != 1 || msgs[0].Auth != "cairn" || !msgs[0].TLS {
			t.Fatalf("delivered %+v", msgs)
		}
		res = SendTest(context.Background(), target(srv, wrong), "h", 10*time.Second)
		if !errors.Is(res[0].Err, ErrAuth) || strings.Contains(res[0].Err.Error(), "wrong-pw") || !strings.Contains(res[0].Advice, "password_file") {
			t.Errorf("AUTH LOGIN, wrong password: %v / %q", res[0].Err, res[0].Advice)
		}
	})
	t.Run("neither", func(t *testing.T) {
		o := opts
		o.AuthExclude = []string{"PLAIN", "LOGIN"}
		o.AuthRefuse = []string{"XOAUTH2"}
		srv := testutil.StartSMTP(t, o)
		res := SendTest(context.Background(), target(srv, pw), "h", 10*time.Second)
		if !errors.Is(res[0].Err, ErrAuth) || !strings.Contains(res[0].Err.Error(), "XOAUTH2") ||
			!strings.Contains(res[0].Err.Error(), "PLAIN") || strings.Contains(res[0].Err.Error(), "hunter2") {
			t.Errorf("no PLAIN or LOGIN: %v", res[0].Err)
		}
		if len(srv.Messages(t)) != 0 {
			t.Errorf("delivered without logging in")
		}
	})
}

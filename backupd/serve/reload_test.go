package serve

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// hangingVCenter accepts connections and never answers (a vCenter that
// hangs): a run connecting to it stays in progress until its 30 s login
// timeout or the server's stop. Each accepted connection is sent on the
// channel.
func hangingVCenter(t *testing.T) (string, chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return ln.Addr().String(), conns
}

// TestServeReloadDuringRun: SIGHUP while a scheduled run is in progress
// takes effect at once (it used to wait for the run to end, hours for a
// big backup), the run goes on, and the interval job is not started again
// by the reload: its next run stays an interval after the last one began.
func TestServeReloadDuringRun(t *testing.T) {
	addr, conns := hangingVCenter(t)
	cfgText := func(vms int) string {
		return `repository: %[1]s
listen: 127.0.0.1:0
parallelism: {vms: ` + string(rune('0'+vms)) + `}
vcenters:
  - name: hung
    url: https://` + addr + `/sdk
    credentials: %[2]s
    insecure: true
jobs:
  - name: nightly
    vcenter: hung
    vms: [web-1]
    schedule: 1h
`
	}
	a := startConfigServer(t, cfgText(1))
	// Two logins at start: the server's check of the vCenter and the run
	// of the interval job.
	for range 2 {
		select {
		case c := <-conns:
			defer c.Close()
		case <-time.After(time.Minute):
			t.Fatal("the interval job did not start")
		}
	}
	began := time.Now()
	ncfg := a.parse(t, cfgText(2))
	a.s.Reload(ncfg)
	for a.s.Config().Parallelism.VMs != 2 {
		if len(a.s.Runs()) > 0 {
			t.Fatalf("the reload waited for the running job to end: %+v", a.s.Runs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(a.s.Runs()) > 0 {
		t.Fatalf("the run ended before the reload: %+v", a.s.Runs())
	}
	// The new timers follow the old ones: the next run is an hour after
	// the last one began, not now.
	var next time.Time
	for next.IsZero() || next.Before(began) {
		a.s.mu.Lock()
		next = a.s.jobStatus("nightly").NextRun
		a.s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	if next.Before(began.Add(50 * time.Minute)) {
		t.Errorf("next run after the reload %s: want an hour after the run at start (%s)", next, began)
	}
	select {
	case c := <-conns:
		c.Close()
		t.Errorf("the reload started the interval job again")
	default:
	}
}

// configServer is a server started from a config text with %[1]s (the
// repository) and %[2]s (a credentials file) in it.
type configServer struct {
	*apiServer
	creds string
}

func startConfigServer(t *testing.T, text string) *configServer {
	t.Helper()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte("user\npassword\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &configServer{creds: creds}
	c.apiServer = &apiServer{repo: repo}
	cfg := c.parse(t, text)
	c.apiServer = runTestServer(t, repo, cfg, nil)
	return c
}

// parse reads a config text of the server's repository and credentials.
func (c *configServer) parse(t *testing.T, text string) *Config {
	t.Helper()
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(text, c.repo, c.creds)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lockedBuffer is a bytes.Buffer for a logger written from goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeReloadAPIChange: a reload that changes api: (hosts, TLS) says
// that it takes effect after a restart, as it does for listen (it was
// ignored without a word).
func TestServeReloadAPIChange(t *testing.T) {
	var logs lockedBuffer
	c := &configServer{}
	dir := t.TempDir()
	c.creds = filepath.Join(dir, "credentials")
	repo := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	c.apiServer = &apiServer{repo: repo}
	text := "repository: %[1]s\nlisten: 127.0.0.1:0\n"
	c.apiServer = runTestServer(t, repo, c.parse(t, text), func(s *Server) {
		s.log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	c.s.Reload(c.parse(t, text+"api: {hosts: [backup.example.com]}\n"))
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "api: changes") {
		t.Errorf("a reload changing api: says nothing:\n%s", logs.String())
	}
}

// TestServeReloadKeepsVerifyTime: a reload does not put off an interval
// repository verify that has not run yet (it restarted its wait, so a
// config reloaded more often than the interval never verified).
func TestServeReloadKeepsVerifyTime(t *testing.T) {
	text := "repository: %[1]s\nlisten: 127.0.0.1:0\n"
	c := startConfigServer(t, text+"verify: {schedule: 1h}\n")
	verify := func() (string, time.Time) {
		c.s.mu.Lock()
		defer c.s.mu.Unlock()
		return c.s.verify.Schedule, c.s.verify.NextRun
	}
	deadline := time.Now().Add(time.Minute)
	waitFor := func(sched string) time.Time {
		for {
			if s, next := verify(); s == sched {
				return next
			}
			if time.Now().After(deadline) {
				t.Fatalf("the verify timer of %q did not start", sched)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	first := waitFor("1h")
	// The same interval written another way: the new timer is seen.
	c.s.Reload(c.parse(t, text+"verify: {schedule: \"@every 1h\"}\n"))
	if got := waitFor("@every 1h"); !got.Equal(first) {
		t.Errorf("verify at %s after the reload, %s before: the reload put it off", got, first)
	}
}

package serve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/schedule"
	"github.com/cairnbackup/cairn/blockmap"
)

func mustSchedule(t *testing.T, spec string) schedule.Schedule {
	t.Helper()
	s, err := schedule.Parse(spec, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRunVCenterDown: with its vCenter unreachable a job fails, is
// recorded, and runs again at the next tick; cancelling the context makes
// Run return.
func TestRunVCenterDown(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte("user\npassword\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A port nobody listens on: the vCenter is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	listen, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := listen.Addr().String()
	listen.Close()

	cfg := &Config{
		Repository: repo, Listen: httpAddr,
		VCenters: []VCenter{{Name: "vc", URL: "https://" + down + "/sdk", Credentials: creds, Insecure: true}},
		Jobs:     []Job{{Name: "nightly", VCenter: "vc", VMs: []string{"*"}, Schedule: mustSchedule(t, "1s"), Parallel: 1}},
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		failed := 0
		for _, r := range s.Runs() {
			if r.Job == "nightly" && r.State == StateFailed && r.Error != "" {
				failed++
			}
		}
		if failed >= 2 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("want two failed, recorded runs; have %+v", s.Runs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

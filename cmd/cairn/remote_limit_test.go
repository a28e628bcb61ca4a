package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/ratelimit"
)

// TestRemoteDefaultLimit: a remote's stored limit reaches every opening
// of it (options() serves the CLI commands and cairn serve alike).
func TestRemoteDefaultLimit(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "a")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := &remoteConfig{Name: "wan", Endpoint: "http://127.0.0.1:1", Bucket: "b", KeyFile: key, LimitRate: 20 << 20}
	o, err := rc.optionsIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if l := o.Store.Limiter; l == nil || l.Schedule().Rate != 20<<20 {
		t.Fatalf("limiter %v, want the remote's 20 MiB/s", l)
	}
	if rc.limitString() != "20MiB/s" {
		t.Errorf("remote list shows %q", rc.limitString())
	}
	rc.LimitRate = int64(ratelimit.Unlimited)
	if o, err = rc.options(); err != nil || o.Store.Limiter != nil || rc.limitString() != "-" {
		t.Fatalf("no limit: limiter %v, %v, list %q", o.Store.Limiter, err, rc.limitString())
	}
}

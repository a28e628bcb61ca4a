package serve

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/ratelimit"
)

// TestReplicateLimitConfig: a replicate: section's limit_rate and
// limit_rate_hours are parsed (windows in the config's time zone), and
// bad ones are refused with the line, the key and an example.
func TestReplicateLimitConfig(t *testing.T) {
	base := "repository: /r\ntimezone: Europe/Berlin\nvcenters: [{name: v, url: https://vc/sdk, credentials: /c}]\njobs:\n  - name: j\n    vcenter: v\n    vms: [a]\n    schedule: 1h\n"
	for _, tc := range []struct{ yaml, want string }{
		{"    replicate: {remote: off, schedule: 1h}\n", "<nil>"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 50M}\n", "50MiB/s"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 100Mbit}\n", "11.92MiB/s"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: unlimited}\n", "unlimited"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 10M, limit_rate_hours: \"Mon-Fri 08:00-18:00\"}\n", "10MiB/s during Mon-Fri 08:00-18:00 (unlimited otherwise)"},
	} {
		cfg, err := ParseConfig("c.yaml", []byte(base+tc.yaml))
		if err != nil {
			t.Errorf("%s: %v", strings.TrimSpace(tc.yaml), err)
			continue
		}
		l := cfg.Jobs[0].Replicate.Limit
		got := "<nil>"
		if l != nil {
			got = l.String()
			if l.Location == nil || l.Location.String() != "Europe/Berlin" {
				t.Errorf("%s: windows in %v, want the config's time zone", strings.TrimSpace(tc.yaml), l.Location)
			}
		}
		if got != tc.want {
			t.Errorf("%s: limit %s, want %s", strings.TrimSpace(tc.yaml), got, tc.want)
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 0}\n", "limit_rate: bad rate \"0\""},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: -5M}\n", "must be positive"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: fast}\n", "limit_rate: bad rate \"fast\""},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 50MB}\n", "unknown unit"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: [50M]}\n", "limit_rate: want a rate like 50M"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate_hours: \"08:00-18:00\"}\n", "limit_rate_hours needs limit_rate"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 5M, limit_rate_hours: \"8-18\"}\n", "limit_rate_hours: bad time window"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 5M, limit_rate_hours: \"Funday 08:00-18:00\"}\n", "Mon-Fri"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: unlimited, limit_rate_hours: \"08:00-18:00\"}\n", "limits nothing"},
		{"    replicate: {remote: off, schedule: 1h, limit_rate: 5M, limit_rate_hours: {from: 8}}\n", "limit_rate_hours: want windows like"},
	} {
		_, err := ParseConfig("c.yaml", []byte(base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "c.yaml:9") || !strings.Contains(err.Error(), "50M") && !strings.Contains(err.Error(), "08:00") {
			t.Errorf("%s: %v, want an error at c.yaml:9 saying %q with an example", strings.TrimSpace(tc.yaml), err, tc.want)
		}
	}
}

// TestServeReplicateLimited: a job's limit_rate replaces the remote's
// default for its replication runs: every byte the run uploads goes
// through the job's limiter, the run's bytes and the metric agree.
func TestServeReplicateLimited(t *testing.T) {
	_, open := testRemote(t)
	var (
		mu     sync.Mutex
		opened []*remote.Remote
		def    = ratelimit.New(ratelimit.Schedule{Rate: 1 << 30})
	)
	opener := func(ctx context.Context, repoDir, name string, excl bool) (*OpenedRemote, error) {
		o, err := open(ctx, repoDir, name, excl)
		if err == nil {
			o.Remote.SetLimiter(def) // the remote's default
			mu.Lock()
			opened = append(opened, o.Remote)
			mu.Unlock()
		}
		return o, err
	}
	t0 := time.Now().Add(-72 * time.Hour).UTC().Truncate(time.Second)
	a := startAPIServer(t, apiSim(t), simConfigHeader+`jobs:
  - name: web
    vcenter: sim
    vms: ["web-*"]
    schedule: "0 0 1 1 *"
    replicate:
      remote: off
      schedule: 1h
      limit_rate: 256M
`, func(s *Server) {
		s.remotes = opener
		repo, err := blockmap.Open(context.Background(), s.Config().Repository, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		for i, vm := range []string{"web-1", "web-2"} {
			writeTestPoint(t, repo, vm, t0.Add(time.Duration(i)*time.Hour), byte(i+1))
		}
	})
	rep := a.firstReplication(t)
	if rep.State != StateOK || rep.Replicated != 2 || rep.BytesUploaded <= 0 {
		t.Fatalf("replication: %+v", rep)
	}
	mu.Lock()
	rem := opened[0]
	mu.Unlock()
	l := rem.Limiter()
	if l == nil || l == def || l.Schedule().Rate != 256<<20 {
		t.Fatalf("the run's limiter is %v, want the job's 256 MiB/s", l)
	}
	if l.Granted() < rep.BytesUploaded {
		t.Fatalf("the job's limiter granted %d bytes, the run uploaded %d", l.Granted(), rep.BytesUploaded)
	}
	if def.Granted() != 0 {
		t.Fatalf("the remote's default limiter granted %d bytes of a job with its own limit", def.Granted())
	}
	if got := a.metric(t, "cairn_remote_bytes_uploaded_total"); got != float64(rep.BytesUploaded) {
		t.Errorf("cairn_remote_bytes_uploaded_total = %v, the run uploaded %d", got, rep.BytesUploaded)
	}
}

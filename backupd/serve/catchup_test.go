package serve

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeCatchUpMissedRun: a cron job whose time passed while serve was
// stopped (its last run, recorded in serve-schedule.json, is older than
// its last cron time) runs once when serve starts again; a job that ran
// after its last time, and one never run before, wait for their next
// time. The record is updated when the run begins.
func TestServeCatchUpMissedRun(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 1 << 20}}}}})
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC()
	// Yearly jobs: their last time is this year's 1 January.
	longAgo := time.Date(start.Year()-1, 6, 1, 0, 0, 0, 0, time.UTC)
	data, _ := json.Marshal(scheduleFile{Began: map[string]time.Time{"nightly": longAgo, "recent": start}})
	if err := os.WriteFile(filepath.Join(repo, ScheduleFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	job := func(name string) string {
		return "  - {name: " + name + ", vcenter: sim, vms: [web-1], schedule: \"0 0 1 1 *\", transports: [file], retries: 0}\n"
	}
	text := "repository: " + repo + "\nlisten: 127.0.0.1:0\ntimezone: UTC\nvcenters:\n  - {name: sim, url: " + sim.URL.String() +
		", credentials: " + creds + ", thumbprint: \"" + sim.Thumbprint + "\"}\njobs:\n" + job("nightly") + job("recent") + job("fresh")
	cfg, err := ParseConfig("cairn.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	a := runTestServer(t, repo, cfg, nil)
	deadline := time.Now().Add(time.Minute)
	for {
		var ended *RunRecord
		for _, r := range a.s.Runs() {
			if r.Job == "nightly" && r.State == StateOK {
				ended = &r
			}
		}
		if ended != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the missed run of nightly did not run at start: %+v", a.s.Runs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, r := range a.s.Runs() {
		if r.Job != "nightly" {
			t.Errorf("a job that missed nothing ran at start: %+v", r)
		}
	}
	raw, err := os.ReadFile(filepath.Join(repo, ScheduleFileName))
	if err != nil {
		t.Fatal(err)
	}
	var f scheduleFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if !f.Began["nightly"].After(start) || !f.Began["recent"].Equal(start) {
		t.Errorf("%s after the catch-up: %s", ScheduleFileName, raw)
	}
	if fi, err := os.Stat(filepath.Join(repo, ScheduleFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode: %v %v", ScheduleFileName, fi.Mode(), err)
	}
}

// TestPrevRun: the newest time of a schedule before now, for cron
// expressions from every minute to yearly.
func TestPrevRun(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 30, 0, time.UTC)
	for _, c := range []struct {
		spec string
		want time.Time
	}{
		{"* * * * *", time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)},
		{"30 22 * * *", time.Date(2026, 12, 5, 22, 30, 0, 0, time.UTC)},
		{"0 4 * * sun", time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)}, // a Sunday
		{"0 4 * * mon", time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)},
		{"0 3 15 * *", time.Date(2026, 11, 15, 3, 0, 0, 0, time.UTC)},
		{"0 0 1 1 *", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		got, ok := prevRun(mustSchedule(t, c.spec), now)
		if !ok || !got.Equal(c.want) {
			t.Errorf("prevRun(%q): %s %v, want %s", c.spec, got, ok, c.want)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
)

// runStdout runs the cairn app with args and returns what it wrote to
// stdout.
func runStdout(t *testing.T, args ...string) (string, error) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdout
	os.Stdout = f
	err = newApp().RunContext(context.Background(), append([]string{"cairn"}, args...))
	os.Stdout = old
	out, rerr := os.ReadFile(f.Name())
	if rerr != nil {
		t.Fatal(rerr)
	}
	return string(out), err
}

// TestPointsSuspicious: cairn points --suspicious lists every VM's
// unacknowledged suspicious points with the VM's last clean point and
// leaves out VMs without any (one acknowledged, one never judged);
// --json says the same; --vm narrows it.
func TestPointsSuspicious(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	ctx := context.Background()
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)
	ids := map[string][]string{}
	for vm, statuses := range map[string][]string{
		"files-1": {anomaly.NoBaseline, anomaly.Normal, anomaly.Normal, anomaly.Suspicious, anomaly.Suspicious},
		"web-1":   {anomaly.Normal, anomaly.Suspicious},
		"db-1":    {"", ""},
	} {
		for i, st := range statuses {
			o := blockmap.PointOptions{Time: t0.Add(time.Duration(i) * 24 * time.Hour)}
			if st != "" {
				v, _ := json.Marshal(anomaly.Verdict{Status: st, Reason: st + " day " + string(rune('0'+i))})
				o.Judge = func(blockmap.Point, []blockmap.Point) json.RawMessage { return v }
			}
			s, err := repo.BeginPoint(ctx, vm, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AddDisk(ctx, "disk0", 1<<20, blockmap.DiskOptions{Full: true}); err != nil {
				t.Fatal(err)
			}
			p, err := s.Commit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ids[vm] = append(ids[vm], p.ID)
		}
	}
	repo.Close()
	if err := anomaly.Acknowledge(dir, anomaly.Ack{VM: "web-1", Point: ids["web-1"][1]}); err != nil {
		t.Fatal(err)
	}

	out, err := runStdout(t, "--repo", dir, "points", "--suspicious")
	if err != nil {
		t.Fatal(err)
	}
	f := ids["files-1"]
	for _, want := range []string{
		"files-1  " + f[3] + "  " + f[2] + "  suspicious day 3",
		"files-1  " + f[4] + "  " + f[2] + "  suspicious day 4",
		"1 VMs with suspicious changes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("points --suspicious lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "web-1") || strings.Contains(out, "db-1") {
		t.Errorf("points --suspicious lists a VM without unacknowledged suspicious points:\n%s", out)
	}

	out, err = runStdout(t, "--repo", dir, "points", "--suspicious", "--json")
	var rep []suspiciousVM
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("points --suspicious --json: %v\n%s", err, out)
	}
	if len(rep) != 1 || rep[0].VM != "files-1" || len(rep[0].Suspicious) != 2 || rep[0].Suspicious[0].ID != f[3] ||
		rep[0].LastClean == nil || rep[0].LastClean.ID != f[2] || rep[0].Acknowledge != "cairn points ack --vm files-1 --point "+f[3] {
		t.Errorf("points --suspicious --json: %+v", rep)
	}

	out, err = runStdout(t, "--repo", dir, "points", "--suspicious", "--vm", "web-1")
	if err != nil || strings.TrimSpace(out) != "no unacknowledged suspicious points" {
		t.Errorf("points --suspicious --vm web-1: %v\n%s", err, out)
	}
}

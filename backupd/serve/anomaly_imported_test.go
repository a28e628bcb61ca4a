package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
)

// importedAnomalyConfig: a job without vcenter for the kvm-* VMs with
// anomaly: thresholds and a remote retention that keeps one point.
const importedAnomalyConfig = `repository: %[1]s
listen: 127.0.0.1:0
timezone: UTC
jobs:
  - name: kvm-offsite
    vms: ["kvm-*"]
    anomaly: %[2]s
    replicate:
      remote: off
      schedule: 1h
      retention: {keep_last: 1}
`

// TestImportedSuspiciousOffsite: a job without vcenter takes the same
// anomaly: block as a vSphere job (validated with the line; the only key
// a job may give) and gives cairn import its thresholds for the job's
// VMs (ImportThresholds). kvm-1 is imported with them: ordinary days of
// text, then a day whose changes are random bytes (suspicious). The
// job's replication with retention keep_last 1 uploads and keeps the
// last clean point offsite beside the suspicious one.
func TestImportedSuspiciousOffsite(t *testing.T) {
	for _, c := range []struct{ block, want string }{
		{"{min_share: 500}", "min_share 500 is not a percentage"},
		{"{min_bytes: lots}", "anomaly: min_bytes \"lots\""},
		{"{min_bytez: 1MiB}", "min_bytez"},
	} {
		if _, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(importedAnomalyConfig, "/srv/repo", c.block))); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "cairn.yaml:7") {
			t.Errorf("imported job with anomaly: %s: error %v, want %q", c.block, err, c.want)
		}
	}
	only := "repository: /srv/repo\njobs:\n  - name: kvm-thresholds\n    vms: [\"kvm-*\"]\n    anomaly: {disabled: true}\n"
	if cfg, err := ParseConfig("cairn.yaml", []byte(only)); err != nil {
		t.Errorf("a job without vcenter with only anomaly: %v", err)
	} else if th, job, ok := cfg.ImportThresholds("kvm-9"); !ok || job != "kvm-thresholds" || !th.Disabled {
		t.Errorf("ImportThresholds(kvm-9) = %+v %q %v", th, job, ok)
	}

	_, opener := testRemote(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(importedAnomalyConfig, repoDir, "{min_bytes: 1MiB, min_baseline: 2}")))
	if err != nil {
		t.Fatal(err)
	}
	th, job, ok := cfg.ImportThresholds("kvm-1")
	if !ok || job != "kvm-offsite" || th.MinBytes != 1<<20 || th.MinBaseline != 2 {
		t.Fatalf("ImportThresholds(kvm-1) = %+v %q %v", th, job, ok)
	}
	if _, _, ok := cfg.ImportThresholds("other-1"); ok {
		t.Errorf("ImportThresholds(other-1): a job selects it")
	}

	var pts []blockmap.Point
	a := runTestServer(t, repoDir, cfg, func(s *Server) {
		s.remotes = opener
		repo, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		img := filepath.Join(t.TempDir(), "kvm-1.raw")
		data := make([]byte, 8<<20)
		text := func(day, n int) []byte {
			var b strings.Builder
			for i := 0; b.Len() < n; i++ {
				fmt.Fprintf(&b, "day %d line %d: request served in %d ms\n", day, i, i*7%300)
			}
			return []byte(b.String()[:n])
		}
		t0 := time.Now().Add(-10 * 24 * time.Hour).UTC().Truncate(time.Second)
		for day := 0; day <= 4; day++ {
			switch {
			case day == 0:
				copy(data, text(0, 4<<20))
			case day < 4:
				copy(data[day<<20:], text(day, 256<<10))
			default:
				r := rand.New(rand.NewPCG(4, 4))
				for i := range data[:4<<20] {
					data[i] = byte(r.Uint32())
				}
			}
			if err := os.WriteFile(img, data, 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := backupd.Import(context.Background(), repo, "kvm-1", []backupd.ImportDisk{{Name: "disk0", Source: img}},
				backupd.ImportOptions{Anomaly: th, Point: blockmap.PointOptions{Time: t0.Add(time.Duration(day) * 24 * time.Hour)}})
			if err != nil {
				t.Fatal(err)
			}
			pts = append(pts, p)
		}
	})
	var verdicts []string
	for _, p := range pts {
		v, _ := anomaly.ReadVerdict(p)
		verdicts = append(verdicts, v.Status)
	}
	if want := "[no-baseline no-baseline no-baseline normal suspicious]"; fmt.Sprint(verdicts) != want {
		t.Fatalf("imported verdicts %v, want %s", verdicts, want)
	}

	deadline := time.Now().Add(2 * time.Minute)
	var rep ReplicationRecord
	for {
		runs := a.s.Replications()
		if len(runs) > 0 && runs[0].State != StateRunning {
			rep = runs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replication did not end: %+v", runs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rep.State != StateOK {
		t.Fatalf("replication run: %+v", rep)
	}
	code, body := a.do(t, http.MethodGet, "/api/v1/remotes/off/points?vm=kvm-1", "", nil)
	var rp struct {
		Points []blockmap.Point `json:"points"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rp) != nil {
		t.Fatalf("/api/v1/remotes/off/points: %d %s", code, body)
	}
	var got []string
	for _, p := range rp.Points {
		got = append(got, p.ID)
	}
	if want := pts[3].ID + "," + pts[4].ID; strings.Join(got, ",") != want {
		t.Fatalf("remote points of kvm-1 %v, want the last clean point and the suspicious one: %s", got, want)
	}
}

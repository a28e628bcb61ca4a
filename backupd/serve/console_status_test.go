package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestStatusSummary: GET /api/v1/status?vms=summary gives each VM its
// name, points, latest point's id, time, consistency and size, and its
// RPO state, in a bounded number of bytes per VM however large the
// point's metadata (VM configuration, disks); the full form, which cairn
// status reads, is unchanged; an unknown form is 400.
func TestStatusSummary(t *testing.T) {
	const vms, disks = 30, 3
	repo := filepath.Join(t.TempDir(), "repo")
	ctx := context.Background()
	if err := blockmap.Init(ctx, repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	// Points as a vSphere backup writes them: a VM configuration in the
	// point's metadata and each disk's.
	meta := json.RawMessage(fmt.Sprintf(`{"config":{"annotation":%q,"devices":%q}}`, strings.Repeat("n", 600), strings.Repeat("d", 900)))
	dmeta := json.RawMessage(fmt.Sprintf(`{"backing":%q,"changeId":"52 3f 0a 9c 11 22 33 44-aa bb cc dd ee ff 00 11/42"}`, strings.Repeat("[ds1] vm/vm.vmdk ", 8)))
	want := map[string]blockmap.Point{}
	withRepo(t, repo, func(r *blockmap.Repo) {
		for i := range vms {
			vm := fmt.Sprintf("vm-%03d", i)
			s, err := r.BeginPoint(ctx, vm, blockmap.PointOptions{Time: time.Now().Add(-time.Duration(i) * time.Hour), Consistency: blockmap.ConsistencyCrash, Meta: meta})
			if err != nil {
				t.Fatal(err)
			}
			for d := range disks {
				w, err := s.AddDisk(ctx, fmt.Sprintf("disk-%d", d), 1<<20, blockmap.DiskOptions{Full: true, Meta: dmeta})
				if err != nil {
					t.Fatal(err)
				}
				blk := make([]byte, 64<<10)
				blk[0], blk[1], blk[2] = byte(i), byte(d), 1
				if _, err := w.WriteAt(blk, 0); err != nil {
					t.Fatal(err)
				}
			}
			p, err := s.Commit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want[vm] = p
		}
	})
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
jobs:
  - name: imp
    vms: ["vm-*"]
    rpo: 5h
`, repo)))
	if err != nil {
		t.Fatal(err)
	}
	a := runTestServer(t, repo, cfg, nil)

	code, full := a.do(t, http.MethodGet, "/api/v1/status", "", nil)
	var st Status
	if code != http.StatusOK || json.Unmarshal([]byte(full), &st) != nil || len(st.VMs) != vms {
		t.Fatalf("status: %d %.300s", code, full)
	}
	for _, v := range st.VMs {
		if v.Latest == nil || len(v.Latest.Disks) != disks || len(v.Latest.Meta) == 0 {
			t.Fatalf("the full form lost %s's latest point: %+v", v.Name, v.Latest)
		}
	}

	code, sum := a.do(t, http.MethodGet, "/api/v1/status?vms=summary", "", nil)
	var ss StatusSummary
	if code != http.StatusOK || json.Unmarshal([]byte(sum), &ss) != nil || len(ss.VMs) != vms {
		t.Fatalf("status?vms=summary: %d %.300s", code, sum)
	}
	if ss.Repository != st.Repository || len(ss.Jobs) != 1 || ss.Jobs[0].Name != "imp" {
		t.Errorf("the summary lost the server's state: repository %q jobs %+v", ss.Repository, ss.Jobs)
	}
	for _, v := range ss.VMs {
		p := want[v.Name]
		if v.Points != 1 || v.Latest == nil || v.Latest.ID != p.ID || !v.Latest.Time.Equal(p.Time) ||
			v.Latest.Consistency != blockmap.ConsistencyCrash || v.Latest.Size != disks<<20 {
			t.Errorf("%s: %+v, want point %s of %d bytes", v.Name, v.Latest, p.ID, disks<<20)
		}
		breached := time.Since(p.Time) > 5*time.Hour
		if v.RPO == nil || v.RPO.Job != "imp" || v.RPO.Breached != breached {
			t.Errorf("%s's RPO: %+v, want breached=%v", v.Name, v.RPO, breached)
		}
		raw, _ := json.Marshal(v)
		if len(raw) > 400 {
			t.Errorf("%s is %d bytes in the summary: %s", v.Name, len(raw), raw)
		}
	}
	if strings.Contains(sum, `"disks"`) || strings.Contains(sum, "changeId") {
		t.Errorf("the summary carries the points' disks or metadata")
	}
	// Measured: ~4.3 KB a VM in the full form, ~0.45 KB in the summary.
	if len(sum)*4 > len(full) {
		t.Errorf("the summary is %d bytes, the full form %d: want less than a quarter", len(sum), len(full))
	}
	t.Logf("%d VMs: full %d bytes, summary %d bytes", vms, len(full), len(sum))

	if code, body := a.do(t, http.MethodGet, "/api/v1/status?vms=some", "", nil); code != http.StatusBadRequest || !strings.Contains(body, "vms=summary") {
		t.Errorf("vms=some: %d %s, want 400 naming vms=summary", code, body)
	}
}

package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestDiffEndpoint: GET .../diff between two points of a real ext4
// filesystem (mkfs.ext4 -d of two trees): the changes, the default
// against (the point before), the limit, and a 404 for the oldest point.
func TestDiffEndpoint(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	ctx := context.Background()
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	var ids []string
	for i, files := range []map[string]string{
		{"etc/hosts": "127.0.0.1 localhost\n", "etc/gone.conf": "x\n", "home/a.txt": "aaaa\n"},
		{"etc/hosts": "127.0.0.1 LOCALHOST\n", "etc/new.conf": "y\n", "home/a.txt": "aaaa\n"},
	} {
		src := filepath.Join(dir, fmt.Sprint("src", i))
		for name, content := range files {
			p := filepath.Join(src, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(p, old, old)
		}
		for _, d := range []string{"etc", "home", "."} {
			os.Chtimes(filepath.Join(src, d), old, old)
		}
		img := filepath.Join(dir, fmt.Sprint("fs", i, ".img"))
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img, "8M").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		p, err := backupd.Import(ctx, repo, "web-1", []backupd.ImportDisk{{Name: "sda", Source: img}},
			backupd.ImportOptions{Point: blockmap.PointOptions{Time: old.Add(time.Duration(i) * time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	repo.Close()
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(browseConfig, repoDir)))
	if err != nil {
		t.Fatal(err)
	}
	a := runTestServer(t, repoDir, cfg, nil)

	var d DiffResponse
	code, body := a.do(t, http.MethodGet, "/api/v1/points/web-1/latest/diff?path=/etc", "", nil)
	if code != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil {
		t.Fatalf("diff: %d %s", code, body)
	}
	got := map[string]string{}
	for _, c := range d.Changes {
		got[c.Path] = c.Kind
	}
	want := map[string]string{"/etc/hosts": guestfind.Modified, "/etc/gone.conf": guestfind.Deleted, "/etc/new.conf": guestfind.Added}
	if d.Against != ids[0] || d.Point != ids[1] || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("diff %s -> %s: %v, want %s -> %s: %v\n%s", d.Against, d.Point, got, ids[0], ids[1], want, body)
	}
	if d.Summary == nil || d.Summary.Kinds[guestfind.Modified].Count != 1 {
		t.Errorf("summary %+v", d.Summary)
	}
	if !strings.Contains(body, `"entropy"`) {
		t.Errorf("the api-token (admin) gets no entropy of the modified file: %s", body)
	}
	// A viewer may ask (as for listings) but gets no entropy figures.
	desk, err := AddToken(repoDir, "desk", RoleViewer, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	code, body = a.do(t, http.MethodGet, "/api/v1/points/web-1/latest/diff?path=/etc", "", map[string]string{"Authorization": "Bearer " + desk})
	if code != http.StatusOK || !strings.Contains(body, "/etc/hosts") || strings.Contains(body, `"entropy"`) {
		t.Errorf("viewer: %d %s", code, body)
	}
	code, body = a.do(t, http.MethodGet, "/api/v1/points/web-1/latest/diff?against="+ids[0]+"&limit=1", "", nil)
	if code != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil || len(d.Changes) != 1 || !d.Truncated {
		t.Errorf("limit=1: %d %s", code, body)
	}
	if code, body = a.do(t, http.MethodGet, "/api/v1/points/web-1/"+ids[0]+"/diff", "", nil); code != http.StatusNotFound {
		t.Errorf("diff of the oldest point: %d %s, want 404", code, body)
	}
	if code, body = a.do(t, http.MethodGet, "/api/v1/points/web-1/latest/diff?limit=x", "", nil); code != http.StatusBadRequest {
		t.Errorf("limit=x: %d %s, want 400", code, body)
	}
}

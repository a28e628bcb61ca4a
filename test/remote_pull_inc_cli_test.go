package test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/s3test"
)

// TestRemotePullIncrementalCLI: after `cairn pull` of a VM's first point,
// pulling its later points (256 KiB changed each on a disk holding 8 MiB)
// downloads about the changes, not the whole point again, as the job log
// counts it; every pulled point keeps its bytes. Before, each point's
// 8 MiB was downloaded again.
func TestRemotePullIncrementalCLI(t *testing.T) {
	f := newRemoteFixtureOn(t, s3test.Versity(t))
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(dir, "web.img")
	makeImage(t, img, 16<<20)
	writeRandom(t, img, 0, 8<<20, 70)
	mustCairn(t, "--repo", repo, "import", "--vm", "web", "--disk", "d0", img)
	for i := range 3 {
		writeRandom(t, img, int64(1+2*i)<<20, 256<<10, uint64(71+i))
		mustCairn(t, "--repo", repo, "import", "--vm", "web", "--disk", "d0", img)
	}
	pts := listPoints(t, repo, "web")
	f.add(t, repo, "offsite")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")

	rebuilt := filepath.Join(dir, "rebuilt")
	mustCairn(t, "--repo", rebuilt, "init")
	f.add(t, rebuilt, "offsite")
	mustCairn(t, "--repo", rebuilt, "pull", "--remote", "offsite", "--vm", "web", "--point", pts[0].ID)
	out := mustCairn(t, "--repo", rebuilt, "pull", "--remote", "offsite")
	if strings.Count(out, "already here") != len(pts)-1 {
		t.Errorf("pull does not say what was already here:\n%s", out)
	}
	var jobs []backupd.JobRecord
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", rebuilt, "jobs", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	var pulls []backupd.JobRecord
	for _, j := range jobs {
		if j.Kind == backupd.JobPull {
			pulls = append(pulls, j)
		}
	}
	if len(pulls) != 2 {
		t.Fatalf("%d pull jobs in the log, want 2", len(pulls))
	}
	first, rest := pulls[0], pulls[1]
	if first.Points > rest.Points { // newest first in the log
		first, rest = rest, first
	}
	// 3 points x 256 KiB of changed blocks, plus manifests and maps and
	// a read-through gap per GET: well under one point's 8 MiB.
	limit := int64(3*(256<<10) + 3*(256<<10))
	t.Logf("first pull downloaded %d bytes; the next %d points %d bytes", first.BytesDownloaded, rest.Points, rest.BytesDownloaded)
	if first.BytesDownloaded < 8<<20 {
		t.Errorf("the first pull downloaded %d bytes, less than the point's 8 MiB of random data", first.BytesDownloaded)
	}
	if rest.Points != len(pts)-1 || rest.BytesDownloaded > limit {
		t.Errorf("pull of %d incremental points downloaded %d bytes, want at most %d", rest.Points, rest.BytesDownloaded, limit)
	}
	for _, p := range pts {
		if exportSHA(t, rebuilt, "web", p.ID, "d0") != exportSHA(t, repo, "web", p.ID, "d0") {
			t.Fatalf("pulled point %s differs from the original", p.ID)
		}
	}
}

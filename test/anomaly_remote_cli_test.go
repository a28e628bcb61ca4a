package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSuspiciousRemoteCLI: imports judged with the anomaly: block of the
// cairn.yaml job without vcenter that names the VM (cairn import
// --config: the defaults would flag nothing this small), then through the
// CLI: the points replicate, prune --remote --keep-last 1 keeps the last
// clean point beside the suspicious one (saying why), and points
// --suspicious --remote names both.
func TestSuspiciousRemoteCLI(t *testing.T) {
	f := newRemoteFixture(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	cfg := filepath.Join(dir, "cairn.yaml")
	writeFile(t, cfg, []byte("repository: "+repo+"\njobs:\n  - name: kvm\n    vms: [\"kvm-*\"]\n    anomaly: {min_bytes: 1MiB, min_baseline: 2}\n"))
	img := filepath.Join(dir, "kvm-1.img")
	makeImage(t, img, 16<<20)
	text := func(day int, off, n int64) {
		t.Helper()
		var b strings.Builder
		for i := 0; int64(b.Len()) < n; i++ {
			fmt.Fprintf(&b, "day %d line %d: request served in %d ms\n", day, i, i*7%300)
		}
		fh, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if _, err := fh.WriteAt([]byte(b.String()[:n]), off); err != nil {
			t.Fatal(err)
		}
	}
	for day := 0; day <= 4; day++ {
		switch {
		case day == 0:
			text(0, 0, 4<<20)
		case day < 4:
			text(day, int64(day)<<20, 256<<10)
		default:
			writeRandom(t, img, 0, 4<<20, 77) // "encrypted"
		}
		mustCairn(t, "--repo", repo, "import", "--vm", "kvm-1", "--disk", "d0", "--config", cfg,
			"--time", fmt.Sprintf("2026-11-%02dT01:00:00Z", 10+day), img)
	}
	pts := pointsOf(t, repo, "kvm-1")
	var got []string
	for _, p := range pts {
		st := "-"
		if p.Verdict != nil {
			st = p.Verdict.Status
		}
		got = append(got, st)
	}
	if want := "[no-baseline no-baseline no-baseline normal suspicious]"; fmt.Sprint(got) != want {
		t.Fatalf("verdicts of the imports with --config %v, want %s", got, want)
	}
	clean, susp := pts[3].ID, pts[4].ID

	f.add(t, repo, "off")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
	out := mustCairn(t, "--repo", repo, "prune", "--remote", "off", "--keep-last", "1")
	if !strings.Contains(out, "kept kvm-1 "+clean+": last clean point before suspicious point "+susp) || !strings.Contains(out, "3 points deleted, 2 kept") {
		t.Fatalf("prune --remote said:\n%s", out)
	}
	var left []string
	for _, p := range remotePoints(t, repo, "off") {
		left = append(left, p.ID)
	}
	if want := clean + " " + susp; strings.Join(left, " ") != want {
		t.Fatalf("remote points after prune %v, want %s", left, want)
	}
	out = mustCairn(t, "--repo", repo, "points", "--suspicious", "--remote", "off")
	if !strings.Contains(out, "kvm-1  "+susp+"  "+clean+"  ") {
		t.Errorf("points --suspicious --remote said:\n%s", out)
	}
}

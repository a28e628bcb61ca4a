package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
)

// TestImportConfigThresholds: cairn import --config judges the new point
// with the anomaly: block of the cairn.yaml job without vcenter whose
// vms: name the VM (here disabled: no verdict, where the defaults give
// one); a VM no such job names is refused with the fix.
func TestImportConfigThresholds(t *testing.T) {
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(cfg, []byte("repository: "+repoDir+"\njobs:\n  - name: kvm\n    vms: [\"kvm-*\"]\n    anomaly: {disabled: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, []byte(strings.Repeat("imported disk ", 1<<16)), 0o600); err != nil {
		t.Fatal(err)
	}
	imp := func(vm string, extra ...string) error {
		args := append([]string{"cairn", "--repo", repoDir, "import", "--vm", vm, "--disk", "disk0"}, extra...)
		return newApp().RunContext(context.Background(), append(args, img))
	}
	verdict := func(vm string) (anomaly.Verdict, bool) {
		t.Helper()
		repo, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		pts, err := repo.Points(context.Background(), vm)
		if err != nil || len(pts) != 1 {
			t.Fatalf("points of %s: %v %v", vm, pts, err)
		}
		return anomaly.ReadVerdict(pts[0])
	}
	if err := imp("kvm-1", "--config", cfg); err != nil {
		t.Fatal(err)
	}
	if v, ok := verdict("kvm-1"); ok {
		t.Errorf("kvm-1 imported with its job's anomaly: {disabled: true} has a verdict %+v", v)
	}
	if err := imp("db-1"); err != nil {
		t.Fatal(err)
	}
	if v, ok := verdict("db-1"); !ok || v.Status != anomaly.NoBaseline {
		t.Errorf("db-1 imported without --config: verdict %+v %v, want no-baseline", v, ok)
	}
	if err := imp("db-2", "--config", cfg); err == nil || !strings.Contains(err.Error(), `no job without vcenter whose vms: name "db-2"`) {
		t.Errorf("import of a VM no job names: %v", err)
	}
}

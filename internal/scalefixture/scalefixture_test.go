package scalefixture

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBuildSmall builds a small fixture and checks its shape: every VM has
// its points, later points are deltas, the job log has a record per point.
func TestBuildSmall(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4")
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	spec := Spec{VMs: 3, Points: 4, DiskMiB: 4, DataMiB: 1, ChangedBlocks: 2, Ext4VMs: 1}
	if err := Build(ctx, dir, spec, t.Logf); err != nil {
		t.Fatal(err)
	}
	r, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cat, err := r.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat) != spec.VMs {
		t.Fatalf("%d VMs, want %d", len(cat), spec.VMs)
	}
	for _, v := range cat {
		if len(v.Points) != spec.Points {
			t.Fatalf("%s: %d points, want %d", v.Name, len(v.Points), spec.Points)
		}
		for i, p := range v.Points[1:] {
			if d := p.Disks[0]; d.Full || d.ChangedBlocks > int64(spec.ChangedBlocks) || d.ChangedBlocks == 0 {
				t.Errorf("%s point %d: full %v, %d changed blocks; want a delta of at most %d", v.Name, i+1, d.Full, d.ChangedBlocks, spec.ChangedBlocks)
			}
		}
	}
	jobs, err := backupd.NewJobLog(dir).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != spec.VMs*spec.Points {
		t.Fatalf("%d jobs, want %d", len(jobs), spec.VMs*spec.Points)
	}
	for _, j := range jobs {
		if j.State != backupd.JobOK || j.Point == "" {
			t.Fatalf("job %+v: want ok with a point", j)
		}
	}
	// The ext4 VM's latest point holds a filesystem e2fsck accepts.
	p, err := r.ResolvePoint(ctx, VMName(0), "latest")
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.OpenDisk(ctx, p, "disk0")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	buf := make([]byte, p.Disks[0].Size)
	if _, err := rd.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.RequireTools(t, "e2fsck")
	out, err := exec.CommandContext(ctx, "e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck of %s: %v\n%s", p.ID, err, out)
	}
}

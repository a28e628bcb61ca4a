package blockmap

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// scaleRepo makes a repository of vms VMs with pts points each (one small
// disk, one changed block a point).
func scaleRepo(t *testing.T, vms, pts int) *Repo {
	t.Helper()
	r := newTestRepo(t)
	t.Cleanup(func() { r.Close() })
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v := 0; v < vms; v++ {
		d := &modelDisk{name: "disk0", data: make([]byte, 4*testBS), changed: map[int64]bool{}}
		for p := 0; p < pts; p++ {
			d.data[int64(p%4)*testBS] = byte(p + 1)
			d.changed[int64(p%4)] = true
			backup(t, r, fmt.Sprintf("vm-%02d", v), []*modelDisk{d}, p == 0, base.Add(time.Duration(p)*24*time.Hour))
		}
	}
	return r
}

// TestOneVMReadsOnlyItsPoints: the operations on one VM (prune with a
// VM, forget, verify --vm, points) read the point records of that VM
// only, never the whole catalog: on a site of 300 VMs, prune after each
// backup (cairn serve) read every point of every VM once per VM.
func TestOneVMReadsOnlyItsPoints(t *testing.T) {
	const vms, pts = 10, 3
	r := scaleRepo(t, vms, pts)
	ctx := context.Background()
	// At most a few reads of the VM's own records each (the operation,
	// the writer's base, the collection after a deletion).
	const most = 4 * pts
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"points", func() error { _, err := r.Points(ctx, "vm-01"); return err }},
		{"prune dry run", func() error { _, err := r.Prune(ctx, "vm-01", Policy{KeepLast: 2}, true); return err }},
		{"prune", func() error { _, err := r.Prune(ctx, "vm-02", Policy{KeepLast: 2}, false); return err }},
		{"prune nothing to delete", func() error { _, err := r.Prune(ctx, "vm-03", Policy{KeepLast: 30}, false); return err }},
		{"forget", func() error { _, err := r.Forget(ctx, "vm-04", []string{"1"}, false); return err }},
		{"verify one VM", func() error { _, err := r.Verify(ctx, VerifyOptions{VM: "vm-05"}); return err }},
	} {
		before := r.pointDecodes.Load()
		if err := tc.run(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := r.pointDecodes.Load() - before; n > most {
			t.Errorf("%s of one VM read %d point records; want at most %d (the repository has %d, its VM %d)", tc.name, n, most, vms*pts, pts)
		}
	}
	// The whole-repository operations still see every VM.
	cat, err := r.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat) != vms || len(cat[2].Points) != 2 || len(cat[4].Points) != pts-1 {
		t.Fatalf("catalog after prune and forget: %d VMs, vm-02 %d points, vm-04 %d points", len(cat), len(cat[2].Points), len(cat[4].Points))
	}
}

// TestCatalogKeptWhileUnchanged: a Repo asked for the catalog again
// (cairn serve's status requests, RPO checks and metrics) reads no point
// record while nothing changed, and sees at once what another process
// (another Repo) or itself committed or deleted.
func TestCatalogKeptWhileUnchanged(t *testing.T) {
	const vms, pts = 4, 3
	r := scaleRepo(t, vms, pts)
	ctx := context.Background()
	other, err := Open(ctx, r.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	count := func(want int, what string) []VMSummary {
		t.Helper()
		cat, err := r.Catalog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, v := range cat {
			n += len(v.Points)
		}
		if n != want {
			t.Fatalf("%s: catalog has %d points, want %d", what, n, want)
		}
		return cat
	}
	reads := func() int64 { return r.pointDecodes.Load() }
	count(vms*pts, "first read")
	before := reads()
	cat := count(vms*pts, "second read")
	if n := reads() - before; n != 0 {
		t.Errorf("second catalog read with nothing changed decoded %d point records, want 0", n)
	}
	// What a caller does to the list it got does not change the next one.
	cat[0].Points = cat[0].Points[:1]
	cat[1].Points[0].ID = "changed"
	if again := count(vms*pts, "after the caller changed its copy"); again[1].Points[0].ID == "changed" {
		t.Errorf("a caller's change to its list reached the kept catalog")
	}
	// Another process commits: seen.
	d := &modelDisk{name: "disk0", data: make([]byte, 4*testBS), changed: map[int64]bool{}}
	backup(t, other, "vm-new", []*modelDisk{d}, true, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	before = reads()
	count(vms*pts+1, "after another Repo committed")
	// ... and only the new record is decoded: the others are unchanged.
	if n := reads() - before; n != 1 {
		t.Errorf("catalog read after one commit decoded %d point records, want 1 (the new point)", n)
	}
	// Another process forgets: seen.
	if _, err := other.Forget(ctx, "vm-00", []string{"1"}, false); err != nil {
		t.Fatal(err)
	}
	count(vms*pts, "after another Repo forgot a point")
	// This Repo prunes: seen.
	if _, err := r.Prune(ctx, "vm-01", Policy{KeepLast: 1}, false); err != nil {
		t.Fatal(err)
	}
	count(vms*pts-2, "after this Repo pruned")
	before = reads()
	count(vms*pts-2, "again")
	if n := reads() - before; n != 0 {
		t.Errorf("catalog read again after the prune decoded %d point records, want 0", n)
	}
}

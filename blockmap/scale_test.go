package blockmap

import (
	"context"
	"errors"
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

// TestPruneAllVMsOneUpdate: a prune of every VM deletes every VM's points
// in one index update (one open, one sync, one publication), not one per
// VM: at 300 VMs the opens and closes were most of a 24 s prune. What it
// deletes and keeps, and what a mount learns from catalog.seq, are those
// of the per-VM prune.
func TestPruneAllVMsOneUpdate(t *testing.T) {
	const vms, pts = 8, 6 // points 5 and 6 overwrite blocks of 1 and 2
	r := scaleRepo(t, vms, pts)
	ctx := context.Background()
	before := r.updates.Load()
	res, err := r.Prune(ctx, "", Policy{KeepLast: 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.updates.Load() - before; n != 1 {
		t.Errorf("prune of %d VMs made %d index updates, want 1", vms, n)
	}
	if len(res.Deleted) != vms*(pts-1) || len(res.Kept) != vms {
		t.Errorf("deleted %d, kept %d points; want %d and %d", len(res.Deleted), len(res.Kept), vms*(pts-1), vms)
	}
	if res.BytesReleased == 0 || res.VersionsDeleted == 0 {
		t.Errorf("nothing released: %+v", res.GCStats)
	}
	st, err := r.CatalogState()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Deleted {
		if _, ok := st.Deleted[PointRef{VM: p.VM, Gen: p.Gen}]; !ok {
			t.Errorf("catalog.seq does not list %s generation %d as deleted", p.VM, p.Gen)
		}
	}
	cat, err := r.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range cat {
		if len(v.Points) != 1 || v.Points[0].Gen != pts {
			t.Errorf("%s keeps %+v, want only generation %d", v.Name, v.Points, pts)
		}
	}
	if rep, err := r.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("verify after the prune: %+v, %v", rep, err)
	}
}

// TestPruneAllVMsSkipsBusyVM: a VM whose lock is held (its backup runs)
// is left whole by a prune of every VM, the others are pruned, and the
// error names the busy VM. Before, the prune stopped at the busy VM and
// left every VM after it unpruned.
func TestPruneAllVMsSkipsBusyVM(t *testing.T) {
	const vms, pts = 4, 3
	r := scaleRepo(t, vms, pts)
	ctx := context.Background()
	other, err := Open(ctx, r.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.LockVM(ctx, "vm-01", "cairn backup")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	res, err := r.Prune(ctx, "", Policy{KeepLast: 1}, false)
	var held *VMLockedError
	if !errors.As(err, &held) || held.VM != "vm-01" || !errors.Is(err, ErrInUse) {
		t.Fatalf("prune with vm-01 busy: %v, want its VMLockedError", err)
	}
	for _, p := range res.Deleted {
		if p.VM == "vm-01" {
			t.Errorf("result lists %s generation %d as deleted", p.VM, p.Gen)
		}
	}
	if len(res.Deleted) != (vms-1)*(pts-1) {
		t.Errorf("deleted %d points, want %d", len(res.Deleted), (vms-1)*(pts-1))
	}
	cat, err := r.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range cat {
		want := 1
		if v.Name == "vm-01" {
			want = pts
		}
		if len(v.Points) != want {
			t.Errorf("%s has %d points after the prune, want %d", v.Name, len(v.Points), want)
		}
	}
}

package test

import (
	"context"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
)

// copyPointTo writes point p of from into to as a new point with p's id,
// time, metadata and disks (what a pull does), read whole.
func copyPointTo(t *testing.T, from, to *blockmap.Repo, p blockmap.Point) blockmap.Point {
	t.Helper()
	ctx := context.Background()
	sess, err := to.BeginPoint(ctx, p.VM, blockmap.PointOptions{ID: p.ID, Time: p.Time, Consistency: p.Consistency, Meta: p.Meta, Purpose: "test pull"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Disks {
		dr, err := from.OpenDisk(ctx, p, d.Name)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, d.Size)
		if _, err := dr.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		dr.Close()
		w, err := sess.AddDisk(ctx, d.Name, d.Size, blockmap.DiskOptions{Full: true, Meta: d.Meta})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt(buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	q, err := sess.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestBackupAfterOutOfOrderPullUsesNewestPoint: in a repository rebuilt by
// pull in the order a disaster recovery takes (the newest point first,
// then the history), the newest point by time is not the highest
// generation. The next backup asks CBT since the newest point's changeId
// (not an older point's), and its point still holds exactly the VM's
// disks: the blocks the later-numbered, older points wrote are read again.
func TestBackupAfterOutOfOrderPullUsesNewestPoint(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	file := backupd.JobOptions{Transports: []string{"file"}}
	p1 := e.mustBackup(t, file).Point
	e.write(t, 20)
	p2 := e.mustBackup(t, file).Point
	e.write(t, 20)
	p3 := e.mustBackup(t, file).Point

	pulled := newTestRepo(t)
	for _, p := range []blockmap.Point{p3, p1, p2} {
		copyPointTo(t, e.repo, pulled, p)
	}
	pts, err := pulled.Points(context.Background(), "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if l := blockmap.Latest(pts); l.ID != p3.ID || l.Gen != 1 {
		t.Fatalf("latest of the pulled repository: %s generation %d, want %s generation 1", l.ID, l.Gen, p3.ID)
	}
	e.repo = pulled
	e.write(t, 5)
	res := e.mustBackup(t, file) // checks every byte against the VM's disks
	for _, d := range res.Point.Disks {
		m, _ := backupd.ReadDiskMeta(d)
		pd, _ := p3.Disk(d.Name)
		want, _ := backupd.ReadDiskMeta(pd)
		if d.Full || m.BaseChangeID != want.ChangeID {
			t.Errorf("disk %s: full=%v (%s), since changeId %q, want incremental since the newest point's %q", d.Name, d.Full, d.FullReason, m.BaseChangeID, want.ChangeID)
		}
	}
	// A later backup builds on that point as usual.
	e.write(t, 3)
	res2 := e.mustBackup(t, file)
	for _, d := range res2.Point.Disks {
		m, _ := backupd.ReadDiskMeta(d)
		pd, _ := res.Point.Disk(d.Name)
		want, _ := backupd.ReadDiskMeta(pd)
		if d.Full || m.BaseChangeID != want.ChangeID {
			t.Errorf("second backup, disk %s: full=%v, since %q, want %q", d.Name, d.Full, m.BaseChangeID, want.ChangeID)
		}
	}
}

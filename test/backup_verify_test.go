package test

import (
	"context"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
)

// TestVerifyAgainstSourceFindsMissedChange writes behind CBT's back (the
// bug VMware documents) and checks that verify --against-source reports
// exactly that block, ignores the tracked changes, and that --repair
// stores a point equal to the source.
func TestVerifyAgainstSourceFindsMissedChange(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	file := backupd.JobOptions{Transports: []string{"file"}}
	e.mustBackup(t, file)
	ctx := context.Background()
	clean, err := backupd.VerifyAgainstSource(ctx, e.repo, e.conn, "vm1", backupd.VerifySourceOptions{JobOptions: file})
	if err != nil || !clean.OK() {
		t.Fatalf("verify right after a backup: %+v %v", clean, err)
	}
	e.write(t, 5) // tracked: may differ, must not be reported
	const missedAt = 3*esxsim.BlockSize + 100
	if err := e.sim.SilentlyMissChange("vm1", 0, missedAt, 1000); err != nil {
		t.Fatal(err)
	}
	rep, err := backupd.VerifyAgainstSource(ctx, e.repo, e.conn, "vm1", backupd.VerifySourceOptions{JobOptions: file, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Repaired == "" {
		t.Fatalf("report %+v: want a missed change and a repaired point", rep)
	}
	for _, d := range rep.Disks {
		want := []blockmap.Extent(nil)
		if d.Name == e.names[0] {
			want = []blockmap.Extent{{Offset: 3 * esxsim.BlockSize, Length: esxsim.BlockSize}}
		}
		if len(d.Missed) != len(want) || (len(want) == 1 && d.Missed[0] != want[0]) {
			t.Errorf("disk %s: missed %v, want %v", d.Name, d.Missed, want)
		}
		if d.Compared == 0 || d.CBTChanged == 0 {
			t.Errorf("disk %s: compared %d, CBT changed %d", d.Name, d.Compared, d.CBTChanged)
		}
	}
	p, err := e.repo.ResolvePoint(ctx, "vm1", rep.Repaired)
	if err != nil {
		t.Fatal(err)
	}
	checkPoint(t, e.repo, p, e.names, runningImages(t, e.sim, "vm1"))
	e.noSnapshots(t)
	// the repaired point carries the new changeId: the next backup is incremental
	e.write(t, 2)
	if res := e.mustBackup(t, file); res.Disks[0].Full || res.Disks[1].Full {
		t.Errorf("backup after a repair was full: %+v", res.Disks)
	}
}

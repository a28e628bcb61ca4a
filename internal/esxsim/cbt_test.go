package esxsim_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

const mib = 1 << 20

func TestCBTFullAndIncrementalAreThePaginatedWrites(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib, MaxChangedAreas: 4})
	vm := vmObject(t, sim, c, "vm1")
	enableCBT(t, vm)
	g, err := sim.Guest("vm1")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// Ten separate 64 KiB blocks, one per MiB, so they cannot merge.
	var first []esxsim.Extent
	for i := range 10 {
		e := esxsim.Extent{Offset: int64(i)*mib + int64(rng.IntN(16))*esxsim.BlockSize, Length: esxsim.BlockSize}
		if err := g.WriteRandom(0, e.Offset, e.Length, rng); err != nil {
			t.Fatal(err)
		}
		first = append(first, e)
	}
	// An unaligned 100-byte write across a block boundary marks both blocks.
	straddle := esxsim.Extent{Offset: 40*mib - 50, Length: 100}
	if err := g.WriteRandom(0, straddle.Offset, straddle.Length, rng); err != nil {
		t.Fatal(err)
	}
	first = append(first, straddle)

	s1 := snapshot(t, vm, "cairn-1", false)
	d1 := snapshotDisks(t, c, s1)[0]
	capacity := d1.CapacityInBytes
	changeID1 := flatBacking(t, d1).ChangeId
	if changeID1 == "" {
		t.Fatal("snapshot disk has no changeId with CBT on")
	}
	full, calls := queryAll(t, vm, s1, d1.Key, capacity, "*")
	sameBlocks(t, `"*" at snapshot 1`, blocksOf(full), extentBlocks(first...))
	if calls < 3 {
		t.Errorf(`"*" answered 11 extents in %d calls with a page size of 4`, calls)
	}
	if len(full) != 11 {
		t.Errorf(`"*" returned %d extents, want 11 (10 blocks + one 2-block extent)`, len(full))
	}

	// After snapshot 1: three new blocks, zeros over one old block.
	var second []esxsim.Extent
	for _, off := range []int64{50 * mib, 50*mib + esxsim.BlockSize, 60 * mib} {
		if err := g.WriteRandom(0, off, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
		second = append(second, esxsim.Extent{Offset: off, Length: esxsim.BlockSize})
	}
	if err := g.WriteZeros(0, first[3].Offset, first[3].Length); err != nil {
		t.Fatal(err)
	}
	second = append(second, first[3])

	// Snapshot 1 is frozen: its "*" answer does not move.
	again, _ := queryAll(t, vm, s1, d1.Key, capacity, "*")
	sameBlocks(t, `"*" at snapshot 1 after more writes`, blocksOf(again), extentBlocks(first...))

	s2 := snapshot(t, vm, "cairn-2", false)
	d2 := snapshotDisks(t, c, s2)[0]
	changeID2 := flatBacking(t, d2).ChangeId
	if changeID2 == changeID1 || changeID2 == "" {
		t.Fatalf("snapshot 2 changeId %q, snapshot 1 %q", changeID2, changeID1)
	}
	incr, _ := queryAll(t, vm, s2, d2.Key, capacity, changeID1)
	sameBlocks(t, "changes from snapshot 1 to 2", blocksOf(incr), extentBlocks(second...))

	wantFull := extentBlocks(first...)
	delete(wantFull, first[3].Offset/esxsim.BlockSize)
	for b := range extentBlocks(second[:3]...) {
		wantFull[b] = true
	}
	full2, _ := queryAll(t, vm, s2, d2.Key, capacity, "*")
	sameBlocks(t, `"*" at snapshot 2`, blocksOf(full2), wantFull)

	none, calls := queryAll(t, vm, s2, d2.Key, capacity, changeID2)
	if len(none) != 0 || calls != 1 {
		t.Errorf("changes since the snapshot's own changeId: %d areas in %d calls, want 0 in 1", len(none), calls)
	}

	// A query from the middle of the disk starts there.
	ctx := context.Background()
	res, err := methods.QueryChangedDiskAreas(ctx, c.Client, &types.QueryChangedDiskAreas{
		This: vm.Reference(), Snapshot: &s2, DeviceKey: d2.Key, StartOffset: 50*mib + 100, ChangeId: changeID1,
	})
	if err != nil {
		t.Fatal(err)
	}
	areas := res.Returnval.ChangedArea
	if len(areas) != 2 || areas[0].Start != 50*mib+100 || areas[0].Length != 2*esxsim.BlockSize-100 || areas[1].Start != 60*mib {
		t.Errorf("query from 50 MiB+100 gave %+v", areas)
	}
	if res.Returnval.Length != capacity-(50*mib+100) {
		t.Errorf("last page length %d, want the rest of the disk %d", res.Returnval.Length, capacity-(50*mib+100))
	}
}

func TestCBTFaults(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib})
	vm := vmObject(t, sim, c, "vm1")
	ctx := context.Background()
	query := func(snap types.ManagedObjectReference, key int32, start int64, changeID string) error {
		_, err := methods.QueryChangedDiskAreas(ctx, c.Client, &types.QueryChangedDiskAreas{
			This: vm.Reference(), Snapshot: &snap, DeviceKey: key, StartOffset: start, ChangeId: changeID,
		})
		return err
	}

	// CBT off: the snapshot's disk has no changeId and queries fail.
	s0 := snapshot(t, vm, "no-cbt", false)
	d0 := snapshotDisks(t, c, s0)[0]
	if id := flatBacking(t, d0).ChangeId; id != "" {
		t.Errorf("changeId %q with CBT off", id)
	}
	if err := query(s0, d0.Key, 0, "*"); faultName(err) != "FileFault" {
		t.Errorf("query with CBT off: %v (%s), want FileFault", err, faultName(err))
	}

	enableCBT(t, vm)
	s1 := snapshot(t, vm, "s1", false)
	d1 := snapshotDisks(t, c, s1)[0]
	id1 := flatBacking(t, d1).ChangeId
	cases := []struct {
		name     string
		key      int32
		start    int64
		changeID string
		fault    string
	}{
		{"malformed changeId", d1.Key, 0, "garbage", "InvalidArgument"},
		{"foreign epoch", d1.Key, 0, "52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1", "FileFault"},
		{"future sequence", d1.Key, 0, id1[:len(id1)-1] + "99", "InvalidArgument"},
		{"unknown device", 9999, 0, "*", "InvalidArgument"},
		{"offset past the end", d1.Key, 64 * mib, "*", "InvalidArgument"},
	}
	for _, tc := range cases {
		err := query(s1, tc.key, tc.start, tc.changeID)
		if faultName(err) != tc.fault {
			t.Errorf("%s: %v (%s), want %s", tc.name, err, faultName(err), tc.fault)
		}
	}

	// ResetCBT: a new epoch, and the old changeId is refused at newer snapshots.
	if err := sim.ResetCBT("vm1"); err != nil {
		t.Fatal(err)
	}
	s2 := snapshot(t, vm, "s2", false)
	d2 := snapshotDisks(t, c, s2)[0]
	if err := query(s2, d2.Key, 0, id1); faultName(err) != "FileFault" {
		t.Errorf("old changeId after ResetCBT: %v (%s), want FileFault", err, faultName(err))
	}
	if err := query(s2, d2.Key, 0, "*"); err != nil {
		t.Errorf(`"*" after ResetCBT: %v`, err)
	}
	if err := query(s2, d2.Key, 0, flatBacking(t, d2).ChangeId); err != nil {
		t.Errorf("new changeId after ResetCBT: %v", err)
	}
	// The older snapshot still answers for its own epoch.
	if err := query(s1, d1.Key, 0, id1); err != nil {
		t.Errorf("snapshot 1 with its own changeId: %v", err)
	}

	// Switching CBT off through the API: no changeId, queries fail.
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(false)})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s3 := snapshot(t, vm, "s3", false)
	d3 := snapshotDisks(t, c, s3)[0]
	if id := flatBacking(t, d3).ChangeId; id != "" {
		t.Errorf("changeId %q after disabling CBT", id)
	}
	if err := query(s3, d3.Key, 0, "*"); faultName(err) != "FileFault" {
		t.Errorf("query after disabling CBT: %v (%s), want FileFault", err, faultName(err))
	}
}

func TestSilentlyMissedChangeIsNotReported(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib})
	vm := vmObject(t, sim, c, "vm1")
	enableCBT(t, vm)
	s1 := snapshot(t, vm, "s1", false)
	d1 := snapshotDisks(t, c, s1)[0]
	g, _ := sim.Guest("vm1")
	if err := g.WriteRandom(0, 2*mib, esxsim.BlockSize, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
	if err := sim.SilentlyMissChange("vm1", 0, 8*mib, esxsim.BlockSize); err != nil {
		t.Fatal(err)
	}
	s2 := snapshot(t, vm, "s2", false)
	d2 := snapshotDisks(t, c, s2)[0]
	incr, _ := queryAll(t, vm, s2, d2.Key, d2.CapacityInBytes, flatBacking(t, d1).ChangeId)
	sameBlocks(t, "incremental", blocksOf(incr), extentBlocks(esxsim.Extent{Offset: 2 * mib, Length: esxsim.BlockSize}))
	full, _ := queryAll(t, vm, s2, d2.Key, d2.CapacityInBytes, "*")
	if !blocksOf(full)[8*mib/esxsim.BlockSize] {
		t.Error(`"*" does not show the silently written block, but the data is on disk`)
	}
	var untracked int
	for _, e := range sim.Journal() {
		if e.Op == esxsim.OpUntrackedWrite && e.Offset == 8*mib {
			untracked++
		}
	}
	if untracked != 1 {
		t.Errorf("journal has %d untracked writes at 8 MiB, want 1", untracked)
	}
}

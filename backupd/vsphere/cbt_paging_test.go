package vsphere_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestChangedAreasLoopsPastEmptyPages has changes only in the last page of
// a disk several pages long: ChangedAreas must not stop at the empty pages
// before it.
func TestChangedAreasLoopsPastEmptyPages(t *testing.T) {
	// Four empty pages of esxsim.DefaultMaxPageBytes, then a short last one.
	const capacity = 4*esxsim.DefaultMaxPageBytes + 3<<20
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{
		Name: "big", Disks: []esxsim.DiskSpec{{Size: capacity}},
	}}})
	ctx := context.Background()
	c := connect(t, sim)
	vm, err := c.FindVM(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.EnableCBT(ctx); err != nil {
		t.Fatal(err)
	}
	g, err := sim.Guest("big")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	write := func(es ...vsphere.Extent) {
		t.Helper()
		for _, e := range es {
			if err := g.WriteRandom(0, e.Offset, e.Length, rng); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := int64(4 * esxsim.DefaultMaxPageBytes)
	first := []vsphere.Extent{
		{Offset: base + 2*esxsim.BlockSize, Length: 3 * esxsim.BlockSize},
		{Offset: capacity - esxsim.BlockSize, Length: esxsim.BlockSize},
	}
	write(first...)
	snap1, err := vm.CreateSnapshot(ctx, "cairn-paging-1", vsphere.QuiesceOff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.RemoveSnapshot(snap1.Ref) })
	d1, ok := snap1.Disk(vm.Disks[0].Key)
	if !ok || d1.Capacity != capacity {
		t.Fatalf("snapshot disk %+v, want %d bytes", d1, int64(capacity))
	}

	// The simulator's first page is empty but does not reach the end.
	gc := esxsimtest.Client(t, sim)
	res, err := methods.QueryChangedDiskAreas(ctx, gc.Client, &types.QueryChangedDiskAreas{
		This: vm.Ref, Snapshot: &snap1.Ref, DeviceKey: d1.Key, StartOffset: 0, ChangeId: "*",
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Returnval; len(p.ChangedArea) != 0 || p.Length <= 0 || p.Length >= capacity {
		t.Fatalf("first page %+v: want an empty page short of the end, else this test proves nothing", p)
	}

	areas, err := vm.ChangedAreas(ctx, snap1.Ref, d1, "*")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(areas, first) {
		t.Errorf(`"*" areas %v, want %v`, areas, first)
	}

	second := []vsphere.Extent{{Offset: base + 1<<20, Length: 2 * esxsim.BlockSize}}
	write(second...)
	snap2, err := vm.CreateSnapshot(ctx, "cairn-paging-2", vsphere.QuiesceOff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.RemoveSnapshot(snap2.Ref) })
	d2, _ := snap2.Disk(vm.Disks[0].Key)
	areas, err = vm.ChangedAreas(ctx, snap2.Ref, d2, d1.ChangeID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(areas, second) {
		t.Errorf("areas since %q: %v, want %v", d1.ChangeID, areas, second)
	}
}

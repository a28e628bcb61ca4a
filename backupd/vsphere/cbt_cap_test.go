package vsphere_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestChangedAreasBounded: the changed-area list of a disk is capped (an
// unbounded list from the server would take the appliance's memory), and
// the cap counts separate areas: touching ones merge as they arrive.
func TestChangedAreasBounded(t *testing.T) {
	const capacity = 16 << 20
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{
		Name: "cap", Disks: []esxsim.DiskSpec{{Size: capacity}},
	}}})
	ctx := context.Background()
	c := connect(t, sim)
	vm, err := c.FindVM(ctx, "cap")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.EnableCBT(ctx); err != nil {
		t.Fatal(err)
	}
	g, err := sim.Guest("cap")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	bs := int64(esxsim.BlockSize)
	for _, off := range []int64{0, 4 * bs, 8 * bs} {
		if err := g.WriteRandom(0, off, bs, rng); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := vm.CreateSnapshot(ctx, "cairn-cap", vsphere.QuiesceOff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.RemoveSnapshot(snap.Ref) })
	d, _ := snap.Disk(vm.Disks[0].Key)

	restore := vsphere.SetMaxChangedAreas(3)
	areas, err := vm.ChangedAreas(ctx, snap.Ref, d, "*")
	restore()
	if err != nil || len(areas) != 3 {
		t.Fatalf("3 separate areas under a cap of 3: %v, %v", areas, err)
	}
	defer vsphere.SetMaxChangedAreas(2)()
	if _, err := vm.ChangedAreas(ctx, snap.Ref, d, "*"); err == nil || !strings.Contains(err.Error(), "more than 2 separate changed areas") {
		t.Fatalf("3 separate areas over a cap of 2: %v, want an error naming the cap", err)
	}
}

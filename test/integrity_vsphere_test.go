package test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestBackupDiskComesBack backs up a VM through vSphere (the simulated
// vCenter), removes its second disk, backs up, adds a new empty disk in
// the same slot (so cairn sees the same disk name) and backs up again: the
// last point's second disk must read as the new, empty disk, not as the
// removed one. (Issue #12, item 1.)
func TestBackupDiskComesBack(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{
		VMs: []esxsim.VMSpec{{Name: "vm1", Disks: []esxsim.DiskSpec{{Size: 8 << 20}, {Size: 8 << 20}}}},
	})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	ctx := context.Background()
	opts := backupd.JobOptions{Transports: []string{"file"}}
	g, err := sim.Guest("vm1")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 1))
	for d := 0; d < 2; d++ {
		if _, err := g.WriteRandomBlocks(d, 40, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
	}
	names := diskNames(t, sim, "vm1")
	r1, err := backupd.BackupVM(ctx, repo, conn, "vm1", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkPoint(t, repo, r1.Point, names, runningImages(t, sim, "vm1"))

	client := esxsimtest.Client(t, sim)
	vm, err := sim.VM(client.Client, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	devices, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	disks := devices.SelectByType((*types.VirtualDisk)(nil))
	if len(disks) != 2 {
		t.Fatalf("%d disks", len(disks))
	}
	if err := vm.RemoveDevice(ctx, false, disks[1]); err != nil {
		t.Fatalf("remove disk: %v", err)
	}
	r2, err := backupd.BackupVM(ctx, repo, conn, "vm1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Point.Disks) != 1 {
		t.Fatalf("point without the removed disk has %d disks", len(r2.Point.Disks))
	}
	ctrl, err := devices.FindSCSIController("")
	if err != nil {
		t.Fatal(err)
	}
	old := disks[1].(*types.VirtualDisk)
	oldBacking := old.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	disk := devices.CreateDisk(ctrl, oldBacking.Datastore.Reference(), strings.Replace(oldBacking.FileName, ".vmdk", "-new.vmdk", 1))
	disk.CapacityInKB = 8 << 10
	disk.Key, disk.UnitNumber = old.Key, old.UnitNumber
	if err := vm.AddDevice(ctx, disk); err != nil {
		t.Fatalf("add disk: %v", err)
	}
	if got := diskNames(t, sim, "vm1"); len(got) != 2 || got[1] != names[1] {
		t.Fatalf("the new disk is named %v, want the removed one's name %s", got, names[1])
	}
	r3, err := backupd.BackupVM(ctx, repo, conn, "vm1", opts)
	if err != nil {
		t.Fatal(err)
	}
	want := runningImages(t, sim, "vm1")
	checkPoint(t, repo, r3.Point, names, want)
	if _, err := repo.Forget(ctx, "vm1", []string{r1.Point.ID}, false); err != nil {
		t.Fatal(err)
	}
	checkPoint(t, repo, r3.Point, names, want)
}

package esxsim_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

// hotAdd attaches a snapshot's disk to the proxy the way a HotAdd backup
// does: an existing file, no file operation, the next free SCSI unit.
func hotAdd(t *testing.T, proxy *object.VirtualMachine, fileName string) *types.VirtualDisk {
	t.Helper()
	ctx := context.Background()
	devices, err := proxy.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := devices.FindSCSIController("")
	if err != nil {
		t.Fatal(err)
	}
	disk := &types.VirtualDisk{VirtualDevice: types.VirtualDevice{
		Key: -1,
		Backing: &types.VirtualDiskFlatVer2BackingInfo{
			VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: fileName},
			DiskMode:                     string(types.VirtualDiskModeIndependent_nonpersistent),
		},
	}}
	devices.AssignController(disk, ctrl)
	if err := proxy.AddDevice(ctx, disk); err != nil {
		t.Fatalf("hot-add %s: %v", fileName, err)
	}
	after, err := proxy.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disksOf(after) {
		if flatBacking(t, d).FileName == fileName {
			return d
		}
	}
	t.Fatalf("hot-added %s not in the proxy's devices", fileName)
	return nil
}

func TestHotAddAttachesTheFrozenDisk(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib, ProxyVM: "cairn-proxy"})
	ctx := context.Background()
	vm := vmObject(t, sim, c, "vm1")
	proxy := vmObject(t, sim, c, "cairn-proxy")
	g, _ := sim.Guest("vm1")
	rng := rand.New(rand.NewPCG(7, 8))
	if _, err := g.WriteRandomBlocks(0, 16, esxsim.BlockSize, rng); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, vm, "cairn-hotadd", false)
	sdisk := snapshotDisks(t, c, snap)[0]
	frozenName := flatBacking(t, sdisk).FileName
	frozenPath, err := sim.LocalPath(frozenName)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(frozenPath)
	if err != nil {
		t.Fatal(err)
	}
	// The guest keeps writing; the attached disk must not see it.
	if _, err := g.WriteRandomBlocks(0, 16, esxsim.BlockSize, rng); err != nil {
		t.Fatal(err)
	}

	added := hotAdd(t, proxy, frozenName)
	b := flatBacking(t, added)
	if b.FileName != frozenName {
		t.Errorf("attached backing %q, want the frozen %q", b.FileName, frozenName)
	}
	if b.Uuid != flatBacking(t, sdisk).Uuid {
		t.Errorf("attached uuid %q, want the snapshot disk's %q", b.Uuid, flatBacking(t, sdisk).Uuid)
	}
	if added.CapacityInBytes != sdisk.CapacityInBytes {
		t.Errorf("attached capacity %d, want %d", added.CapacityInBytes, sdisk.CapacityInBytes)
	}
	dev, err := sim.DeviceLocalPath("cairn-proxy", added.Key)
	if err != nil {
		t.Fatal(err)
	}
	if dev != frozenPath {
		t.Errorf("device path %q, want %q", dev, frozenPath)
	}
	got, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the attached device does not read as the disk at snapshot time")
	}

	// ESXi cannot remove a snapshot whose disk is still attached elsewhere.
	err = removeSnapshot(vm, snap)
	if faultName(err) != "FileLocked" {
		t.Errorf("removing an attached snapshot: %v (%s), want FileLocked", err, faultName(err))
	}
	if err := proxy.RemoveDevice(ctx, true, added); err != nil {
		t.Fatalf("detach: %v", err)
	}
	after, err := proxy.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(disksOf(after)) != 0 {
		t.Errorf("proxy still has %d disks after detach", len(disksOf(after)))
	}
	if _, err := os.Stat(frozenPath); err != nil {
		t.Errorf("detaching (keepFiles) removed the frozen disk: %v", err)
	}
	if err := removeSnapshot(vm, snap); err != nil {
		t.Fatalf("remove snapshot after detach: %v", err)
	}
	if _, err := os.Stat(frozenPath); !os.IsNotExist(err) {
		t.Errorf("frozen disk still there after removal: %v", err)
	}
}

func TestGrowDiskResetsChangeTracking(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib})
	ctx := context.Background()
	vm := vmObject(t, sim, c, "vm1")
	enableCBT(t, vm)
	s1 := snapshot(t, vm, "s1", false)
	id1 := flatBacking(t, snapshotDisks(t, c, s1)[0]).ChangeId

	g, _ := sim.Guest("vm1")
	if err := g.Grow(ctx, 0, 96*mib); err != nil {
		t.Fatalf("grow by back door: %v", err)
	}
	// And through the API, as an administrator extends a disk.
	disk := vmDisks(t, vm)[0]
	if disk.CapacityInBytes != 96*mib {
		t.Fatalf("capacity after back-door grow %d, want %d", disk.CapacityInBytes, 96*mib)
	}
	disk.CapacityInBytes = 128 * mib
	disk.CapacityInKB = 128 * mib / 1024
	if err := vm.EditDevice(ctx, disk); err != nil {
		t.Fatalf("grow through ReconfigVM: %v", err)
	}
	disk = vmDisks(t, vm)[0]
	info, _ := sim.Disks("vm1")
	st, err := os.Stat(info[0].LocalPath)
	if err != nil {
		t.Fatal(err)
	}
	if disk.CapacityInBytes != 128*mib || st.Size() != 128*mib || info[0].Size != 128*mib {
		t.Fatalf("after grow: capacity %d, file %d, back door %d; want %d", disk.CapacityInBytes, st.Size(), info[0].Size, 128*mib)
	}
	if err := g.WriteRandom(0, 120*mib, esxsim.BlockSize, rand.New(rand.NewPCG(9, 9))); err != nil {
		t.Fatalf("write in the grown area: %v", err)
	}
	s2 := snapshot(t, vm, "s2", false)
	d2 := snapshotDisks(t, c, s2)[0]
	if d2.CapacityInBytes != 128*mib {
		t.Errorf("snapshot capacity %d, want %d", d2.CapacityInBytes, 128*mib)
	}
	if _, _, err := tryQueryAll(vm, s2, d2.Key, d2.CapacityInBytes, id1); faultName(err) != "FileFault" {
		t.Errorf("changeId from before the grow: %v (%s), want FileFault", err, faultName(err))
	}
	full, _ := queryAll(t, vm, s2, d2.Key, d2.CapacityInBytes, "*")
	sameBlocks(t, `"*" after grow`, blocksOf(full), extentBlocks(esxsim.Extent{Offset: 120 * mib, Length: esxsim.BlockSize}))
	if err := g.Grow(ctx, 0, 64*mib); err == nil {
		t.Error("shrinking a disk succeeded")
	}
}

func TestHardwareVersion4HasNoCBT(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "old", Disks: []esxsim.DiskSpec{{}}, HardwareVersion: "vmx-04"},
	}})
	ctx := context.Background()
	vm := vmObject(t, sim, c, "old")
	var mvm mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config", "capability"}, &mvm); err != nil {
		t.Fatal(err)
	}
	if mvm.Config.Version != "vmx-04" {
		t.Errorf("version %q, want vmx-04", mvm.Config.Version)
	}
	if mvm.Capability.ChangeTrackingSupported == nil || *mvm.Capability.ChangeTrackingSupported {
		t.Errorf("capability.changeTrackingSupported = %v, want false", mvm.Capability.ChangeTrackingSupported)
	}
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(true)})
	if err != nil {
		t.Fatal(err)
	}
	err = task.Wait(ctx)
	if faultName(err) != "NotSupported" {
		t.Errorf("enabling CBT on vmx-04: %v (%s), want NotSupported", err, faultName(err))
	}
	snap := snapshot(t, vm, "s", false)
	if id := flatBacking(t, snapshotDisks(t, c, snap)[0]).ChangeId; id != "" {
		t.Errorf("vmx-04 snapshot disk has changeId %q", id)
	}
}

func TestAddAndRemoveDiskThroughReconfigure(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib})
	ctx := context.Background()
	vm := vmObject(t, sim, c, "vm1")
	enableCBT(t, vm)
	devices, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := devices.FindSCSIController("")
	if err != nil {
		t.Fatal(err)
	}
	disk := devices.CreateDisk(ctrl, types.ManagedObjectReference{}, "")
	disk.CapacityInKB = 32 * mib / 1024
	if err := vm.AddDevice(ctx, disk); err != nil {
		t.Fatalf("add disk: %v", err)
	}
	infos, err := sim.Disks("vm1")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("%d disks after adding one, want 2", len(infos))
	}
	added := infos[1]
	st, err := os.Stat(added.LocalPath)
	if err != nil || st.Size() != 32*mib || added.Size != 32*mib || !added.ChangeTracking {
		t.Fatalf("new disk %+v: file %v %v", added, st, err)
	}
	g, _ := sim.Guest("vm1")
	if err := g.WriteRandom(1, mib, esxsim.BlockSize, rand.New(rand.NewPCG(2, 2))); err != nil {
		t.Fatalf("write the new disk: %v", err)
	}
	snap := snapshot(t, vm, "s", false)
	var sd *types.VirtualDisk
	for _, d := range snapshotDisks(t, c, snap) {
		if d.Key == added.Key {
			sd = d
		}
	}
	if sd == nil {
		t.Fatal("snapshot lacks the new disk")
	}
	full, _ := queryAll(t, vm, snap, sd.Key, sd.CapacityInBytes, "*")
	sameBlocks(t, "new disk", blocksOf(full), extentBlocks(esxsim.Extent{Offset: mib, Length: esxsim.BlockSize}))
	if err := removeSnapshot(vm, snap); err != nil {
		t.Fatal(err)
	}

	for _, d := range vmDisks(t, vm) {
		if d.Key == added.Key {
			if err := vm.RemoveDevice(ctx, false, d); err != nil {
				t.Fatalf("remove disk: %v", err)
			}
		}
	}
	if infos, _ := sim.Disks("vm1"); len(infos) != 1 {
		t.Errorf("%d disks after removing one, want 1", len(infos))
	}
	if _, err := os.Stat(added.LocalPath); !os.IsNotExist(err) {
		t.Errorf("destroyed disk's flat file still there: %v", err)
	}
}

package esxsim_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// startWithClient starts a simulator and logs in.
func startWithClient(t *testing.T, opts esxsim.Options) (*esxsim.Sim, *govmomi.Client) {
	t.Helper()
	sim := esxsimtest.Start(t, opts)
	return sim, esxsimtest.Client(t, sim)
}

func vmObject(t *testing.T, sim *esxsim.Sim, c *govmomi.Client, name string) *object.VirtualMachine {
	t.Helper()
	vm, err := sim.VM(c.Client, name)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func enableCBT(t *testing.T, vm *object.VirtualMachine) {
	t.Helper()
	ctx := context.Background()
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatalf("enable CBT: %v", err)
	}
}

// snapshot takes a snapshot through the API and returns its moref.
func snapshot(t *testing.T, vm *object.VirtualMachine, name string, quiesce bool) types.ManagedObjectReference {
	t.Helper()
	ref, err := trySnapshot(vm, name, quiesce)
	if err != nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	return ref
}

func trySnapshot(vm *object.VirtualMachine, name string, quiesce bool) (types.ManagedObjectReference, error) {
	ctx := context.Background()
	task, err := vm.CreateSnapshot(ctx, name, "", false, quiesce)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	return info.Result.(types.ManagedObjectReference), nil
}

func removeSnapshot(vm *object.VirtualMachine, snap types.ManagedObjectReference) error {
	ctx := context.Background()
	req := types.RemoveSnapshot_Task{This: snap, RemoveChildren: false}
	res, err := methods.RemoveSnapshot_Task(ctx, vm.Client(), &req)
	if err != nil {
		return err
	}
	return object.NewTask(vm.Client(), res.Returnval).Wait(ctx)
}

// snapshotDisks reads the snapshot's disks as a backup would: from the
// snapshot's config.hardware.device.
func snapshotDisks(t *testing.T, c *govmomi.Client, snap types.ManagedObjectReference) []*types.VirtualDisk {
	t.Helper()
	var mso mo.VirtualMachineSnapshot
	pc := c.PropertyCollector()
	if err := pc.RetrieveOne(context.Background(), snap, []string{"config.hardware.device"}, &mso); err != nil {
		t.Fatalf("read snapshot config: %v", err)
	}
	return disksOf(mso.Config.Hardware.Device)
}

func vmDisks(t *testing.T, vm *object.VirtualMachine) []*types.VirtualDisk {
	t.Helper()
	devices, err := vm.Device(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return disksOf(devices)
}

func disksOf(devices []types.BaseVirtualDevice) []*types.VirtualDisk {
	var out []*types.VirtualDisk
	for _, d := range devices {
		if disk, ok := d.(*types.VirtualDisk); ok {
			out = append(out, disk)
		}
	}
	return out
}

func flatBacking(t *testing.T, d *types.VirtualDisk) *types.VirtualDiskFlatVer2BackingInfo {
	t.Helper()
	b, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		t.Fatalf("disk %d backing is %T, want flat", d.Key, d.Backing)
	}
	return b
}

// queryAll loops QueryChangedDiskAreas on startOffset as a backup must and
// returns every area and the number of calls it took.
func queryAll(t *testing.T, vm *object.VirtualMachine, snap types.ManagedObjectReference, key int32, capacity int64, changeID string) ([]types.DiskChangeExtent, int) {
	t.Helper()
	areas, calls, err := tryQueryAll(vm, snap, key, capacity, changeID)
	if err != nil {
		t.Fatalf("QueryChangedDiskAreas(%q): %v", changeID, err)
	}
	return areas, calls
}

func tryQueryAll(vm *object.VirtualMachine, snap types.ManagedObjectReference, key int32, capacity int64, changeID string) ([]types.DiskChangeExtent, int, error) {
	ctx := context.Background()
	var out []types.DiskChangeExtent
	calls := 0
	for off := int64(0); off < capacity; {
		req := types.QueryChangedDiskAreas{This: vm.Reference(), Snapshot: &snap, DeviceKey: key, StartOffset: off, ChangeId: changeID}
		res, err := methods.QueryChangedDiskAreas(ctx, vm.Client(), &req)
		calls++
		if err != nil {
			return nil, calls, err
		}
		info := res.Returnval
		if info.StartOffset != off || info.Length <= 0 {
			return nil, calls, errors.New("answer does not advance")
		}
		out = append(out, info.ChangedArea...)
		off = info.StartOffset + info.Length
	}
	return out, calls, nil
}

// blocksOf expands areas to the set of 64 KiB blocks they touch.
func blocksOf(areas []types.DiskChangeExtent) map[int64]bool {
	out := map[int64]bool{}
	for _, a := range areas {
		for b := a.Start / esxsim.BlockSize; b*esxsim.BlockSize < a.Start+a.Length; b++ {
			out[b] = true
		}
	}
	return out
}

func extentBlocks(es ...esxsim.Extent) map[int64]bool {
	var areas []types.DiskChangeExtent
	for _, e := range es {
		areas = append(areas, types.DiskChangeExtent{Start: e.Offset, Length: e.Length})
	}
	return blocksOf(areas)
}

func sameBlocks(t *testing.T, what string, got, want map[int64]bool) {
	t.Helper()
	for b := range want {
		if !got[b] {
			t.Errorf("%s: block %d (offset %d) missing", what, b, b*esxsim.BlockSize)
		}
	}
	for b := range got {
		if !want[b] {
			t.Errorf("%s: block %d (offset %d) reported but not written", what, b, b*esxsim.BlockSize)
		}
	}
}

// faultOf returns the vim fault inside err, nil if there is none.
func faultOf(err error) types.AnyType {
	var te task.Error
	if errors.As(err, &te) {
		return te.Fault()
	}
	if soap.IsSoapFault(err) {
		return soap.ToSoapFault(err).VimFault()
	}
	return nil
}

// faultName names the vim fault type inside err ("InvalidLogin"), "" if none.
func faultName(err error) string {
	f := faultOf(err)
	if f == nil {
		return ""
	}
	return strings.TrimPrefix(strings.TrimPrefix(fmt.Sprintf("%T", f), "*"), "types.")
}

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

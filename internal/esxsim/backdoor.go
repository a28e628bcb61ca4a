package esxsim

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// DiskInfo describes one disk of a simulated VM.
type DiskInfo struct {
	Index          int    // position in the VM's disk list (the back doors' disk argument)
	Key            int32  // device key (2000+unit for scsi0, 16000+ for sata0, 32000+ for nvme0)
	Controller     string // ControllerSCSI, ControllerSATA or ControllerNVMe
	FileName       string // datastore path, "[datastore1] vm1/vm1.vmdk"
	DescriptorPath string // local path of the descriptor
	LocalPath      string // local path of the raw flat extent
	Size           int64  // capacity in bytes
	UUID           string // backing.uuid
	ChangeTracking bool   // CBT on for this disk
}

// Disks lists the named VM's disks.
func (s *Sim) Disks(vmName string) ([]DiskInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vm, err := s.vmLocked(vmName)
	if err != nil {
		return nil, err
	}
	out := make([]DiskInfo, len(vm.disks))
	for i, d := range vm.disks {
		out[i] = DiskInfo{
			Index: d.index, Key: d.key, Controller: d.controller, FileName: d.dsPath,
			DescriptorPath: d.descPath, LocalPath: d.flatPath, Size: d.size, UUID: d.uuid,
			ChangeTracking: d.track.epoch != "",
		}
	}
	return out, nil
}

// SnapshotDisk describes a disk frozen by a snapshot.
type SnapshotDisk struct {
	Key       int32
	FileName  string // datastore path of the frozen copy
	LocalPath string // local path of its raw flat extent
	Size      int64
	ChangeID  string // changeId of the moment, "" when CBT was off
}

// SnapshotDisks lists the frozen disks of a snapshot taken through the API.
func (s *Sim) SnapshotDisks(snapshot types.ManagedObjectReference) ([]SnapshotDisk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snapshots[snapshot.Value]
	if !ok {
		return nil, fmt.Errorf("snapshot %s: %w", snapshot.Value, ErrNotFound)
	}
	out := make([]SnapshotDisk, len(snap.disks))
	for i, fd := range snap.disks {
		out[i] = SnapshotDisk{Key: fd.key, FileName: fd.dsPath, LocalPath: fd.flatPath, Size: fd.size, ChangeID: fd.track.changeID()}
	}
	return out, nil
}

// ResetCBT starts a new change-tracking epoch on every disk of the VM, as
// disabling and re-enabling CBT does: changeIds handed out before are
// refused with a FileFault afterwards.
func (s *Sim) ResetCBT(vmName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vm, err := s.vmLocked(vmName)
	if err != nil {
		return err
	}
	if !vm.cbt {
		return fmt.Errorf("vm %q: change tracking is not enabled", vmName)
	}
	for _, d := range vm.disks {
		if err := d.track.start(true, d.size); err != nil {
			return err
		}
	}
	s.record(JournalEntry{Op: OpCBTReset, VM: vm.name, Disk: -1})
	return nil
}

// SetFailQuiesce makes quiesced snapshots of the VM fail (or succeed again).
func (s *Sim) SetFailQuiesce(vmName string, fail bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vm, err := s.vmLocked(vmName)
	if err != nil {
		return err
	}
	vm.failQuiesce = fail
	return nil
}

// GrowDisk extends a disk to newSize bytes (a multiple of 1 MiB) through
// ReconfigVM_Task, exactly as an administrator would; change tracking of
// that disk starts a new epoch.
func (s *Sim) GrowDisk(ctx context.Context, vmName string, disk int, newSize int64) error {
	if newSize <= 0 || newSize%(1<<20) != 0 {
		return fmt.Errorf("grow disk: size %d is not a positive multiple of 1 MiB", newSize)
	}
	s.mu.Lock()
	d, err := s.diskLocked(vmName, disk)
	var ref types.ManagedObjectReference
	var key int32
	var size int64
	if err == nil {
		ref, key, size = d.vm.ref, d.key, d.size
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if newSize < size {
		return fmt.Errorf("grow disk %s/%d: %d is smaller than the current %d", vmName, disk, newSize, size)
	}
	vm := object.NewVirtualMachine(s.inproc, ref)
	devices, err := vm.Device(ctx)
	if err != nil {
		return fmt.Errorf("grow disk %s/%d: read devices: %w", vmName, disk, err)
	}
	dev, ok := devices.FindByKey(key).(*types.VirtualDisk)
	if !ok {
		return fmt.Errorf("grow disk %s/%d: device %d: %w", vmName, disk, key, ErrNotFound)
	}
	dev.CapacityInBytes = newSize
	dev.CapacityInKB = newSize / 1024
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: dev},
	}})
	if err != nil {
		return fmt.Errorf("grow disk %s/%d: %w", vmName, disk, err)
	}
	if err := task.Wait(ctx); err != nil {
		return fmt.Errorf("grow disk %s/%d: %w", vmName, disk, err)
	}
	return nil
}

// PowerState is the named VM's power state and its MoRef (a VM destroyed
// and created again under the same name, as a restore does, has a new
// one). The lab's guests write only while their VM is powered on.
func (s *Sim) PowerState(vmName string) (types.VirtualMachinePowerState, types.ManagedObjectReference, error) {
	s.mu.Lock()
	vm, err := s.vmLocked(vmName)
	var ref types.ManagedObjectReference
	if err == nil {
		ref = vm.ref
	}
	s.mu.Unlock()
	if err != nil {
		return "", ref, err
	}
	var st types.VirtualMachinePowerState
	err = s.withVM(ref, func(_ *simulator.Context, v *simulator.VirtualMachine) { st = v.Runtime.PowerState })
	return st, ref, err
}

package esxsim

import (
	"fmt"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// RDM compatibility modes of DiskSpec.RDM.
const (
	RDMPhysical = "physical"
	RDMVirtual  = "virtual"
)

// The VMs real sites have that break naive backup tools, as ESXi shows
// them:
//
//   - Independent disks (DiskSpec.Mode independent_persistent or
//     independent_nonpersistent) are left out of snapshots: the snapshot's
//     configuration lists them with the live disk's backing (no frozen
//     copy, no changeId of the moment).
//   - Raw device mappings (DiskSpec.RDM): the disk's backing is a
//     VirtualDiskRawDiskMappingVer1BackingInfo (compatibilityMode
//     physicalMode or virtualMode, deviceName /vmfs/devices/disks/naa...,
//     fileName the mapping file) whose data is the disk's flat file here
//     (standing in for the LUN). A physical-mode RDM is left out of
//     snapshots like an independent disk; a virtual-mode one is frozen
//     like any disk and tracked by CBT.
//   - SetSnapshotFault makes CreateSnapshot fail through its task with a
//     chosen fault (a vMotion in progress: InvalidState; an encrypted VM
//     and a user without cryptographic privileges: NoPermission).
//   - EditVM changes any property of a VM as vCenter would show it
//     (runtime.connectionState orphaned or inaccessible, config.ftInfo of
//     a Fault Tolerance pair, config.keyId of an encrypted VM).

// orPersistent is a disk mode, persistent when unset.
func orPersistent(mode string) string {
	if mode == "" {
		return string(types.VirtualDiskModePersistent)
	}
	return mode
}

// snapshotted reports whether a snapshot includes the disk.
func (d *diskState) snapshotted() bool {
	return !strings.HasPrefix(d.mode, "independent") && d.rdm != RDMPhysical
}

// applyRDMs gives the VM's RDM disks their mapping backing (vcsim creates
// flat disks only).
func (s *Sim) applyRDMs(st *vmState) error {
	return s.withVM(st.ref, func(_ *simulator.Context, vm *simulator.VirtualMachine) {
		for _, dev := range vm.Config.Hardware.Device {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok {
				continue
			}
			b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				continue
			}
			for _, d := range st.disks {
				if d.dsPath != b.FileName || d.rdm == "" {
					continue
				}
				compat := types.VirtualDiskCompatibilityModeVirtualMode
				if d.rdm == RDMPhysical {
					compat = types.VirtualDiskCompatibilityModePhysicalMode
				}
				lun := "naa.600" + strings.ReplaceAll(strings.ToLower(d.uuid), "-", "")
				disk.Backing = &types.VirtualDiskRawDiskMappingVer1BackingInfo{
					DeviceName:                   "/vmfs/devices/disks/" + lun,
					VirtualDeviceFileBackingInfo: b.VirtualDeviceFileBackingInfo,
					LunUuid:                      lun,
					CompatibilityMode:            string(compat),
					DiskMode:                     b.DiskMode,
					Uuid:                         b.Uuid,
					ChangeId:                     b.ChangeId,
				}
			}
		}
	})
}

// keptRDMs are the VM's RDM disks still among devices (flatDisks skips
// them); s.mu held.
func keptRDMs(vm *vmState, devices []types.BaseVirtualDevice) []*diskState {
	var out []*diskState
	for _, dev := range devices {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo)
		if !ok {
			continue
		}
		for _, d := range vm.disks {
			if d.rdm != "" && d.dsPath == b.FileName {
				out = append(out, d)
			}
		}
	}
	return out
}

// SetSnapshotFault makes every CreateSnapshot of the named VM fail through
// its task with fault (nil: snapshots work again).
func (s *Sim) SetSnapshotFault(vmName string, fault types.BaseMethodFault) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vm, err := s.vmLocked(vmName)
	if err != nil {
		return err
	}
	vm.snapFault = fault
	return nil
}

// EditVM changes the named VM's properties as vCenter shows them, under
// the simulator's lock (runtime.connectionState, config.ftInfo,
// config.keyId, ...).
func (s *Sim) EditVM(vmName string, edit func(vm *mo.VirtualMachine)) error {
	ref, err := s.VMRef(vmName)
	if err != nil {
		return err
	}
	return s.withVM(ref, func(_ *simulator.Context, vm *simulator.VirtualMachine) { edit(&vm.VirtualMachine) })
}

// SetDatastoreAccessible marks a datastore accessible or not
// (summary.accessible, as when its storage is lost to the hosts).
func (s *Sim) SetDatastoreAccessible(name string, ok bool) error {
	m := s.model.Map()
	for _, obj := range m.All("Datastore") {
		ds, isDS := obj.(*simulator.Datastore)
		if !isDS || ds.Name != name {
			continue
		}
		ctx := &simulator.Context{Map: m}
		ctx.WithLock(ds, func() {
			ds.Summary.Accessible = ok
			if ok {
				ds.OverallStatus = types.ManagedEntityStatusGreen
			} else {
				ds.OverallStatus = types.ManagedEntityStatusRed
			}
		})
		return nil
	}
	return fmt.Errorf("datastore %q: %w", name, ErrNotFound)
}

// flatRDMs swaps the VM's RDM backings for flat ones while vcsim's own
// code runs (its storage layout code knows flat disks only and panics on
// others) and returns the function that puts them back. The caller holds
// vcsim's lock on vm; properties read in between show flat backings.
func flatRDMs(vm *simulator.VirtualMachine) (restore func()) {
	rdms := map[int32]*types.VirtualDiskRawDiskMappingVer1BackingInfo{}
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo)
		if !ok {
			continue
		}
		rdms[disk.Key] = b
		disk.Backing = &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: b.VirtualDeviceFileBackingInfo,
			DiskMode: b.DiskMode, Uuid: b.Uuid, ChangeId: b.ChangeId}
	}
	return func() {
		for _, dev := range vm.Config.Hardware.Device {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok {
				continue
			}
			b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			r := rdms[disk.Key]
			if !ok || r == nil || b.FileName != r.FileName {
				continue
			}
			nr := *r
			nr.ChangeId = b.ChangeId
			disk.Backing = &nr
		}
	}
}

// withFlatRDMs runs f with the RDM backings of the VM ref flattened
// (flatRDMs), locking the VM only to swap them.
func (s *Sim) withFlatRDMs(ref types.ManagedObjectReference, f func()) {
	restore := func() {}
	_ = s.withVM(ref, func(_ *simulator.Context, vm *simulator.VirtualMachine) { restore = flatRDMs(vm) })
	defer func() { _ = s.withVM(ref, func(*simulator.Context, *simulator.VirtualMachine) { restore() }) }()
	f()
}

// SetMigrating shows a migration of the named VM in progress, as vCenter
// does during a vMotion: a running RelocateVM_Task (descriptionId
// "VirtualMachine.relocate") among the VM's recentTask. The task never
// ends; SetMigrating(name, false) drops it from recentTask.
func (s *Sim) SetMigrating(vmName string, on bool) error {
	ref, err := s.VMRef(vmName)
	if err != nil {
		return err
	}
	m := s.model.Map()
	var task *simulator.Task
	if on {
		task = &simulator.Task{}
		task.Self = types.ManagedObjectReference{Type: "Task", Value: "task-esxsim-migrate-" + ref.Value}
		task.Info = types.TaskInfo{Key: task.Self.Value, Task: task.Self, Name: "RelocateVM_Task", DescriptionId: "VirtualMachine.relocate",
			Entity: &ref, EntityName: vmName, State: types.TaskInfoStateRunning}
		m.Put(task)
	}
	return s.withVM(ref, func(_ *simulator.Context, vm *simulator.VirtualMachine) {
		var keep []types.ManagedObjectReference
		for _, t := range vm.RecentTask {
			if !strings.HasPrefix(t.Value, "task-esxsim-migrate-") {
				keep = append(keep, t)
			}
		}
		if task != nil {
			keep = append(keep, task.Self)
		}
		vm.RecentTask = keep
	})
}

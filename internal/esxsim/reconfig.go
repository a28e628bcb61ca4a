package esxsim

import (
	"fmt"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ReconfigVMTask lets vcsim apply the spec, then brings the real files and
// change tracking in line: CBT on/off, disks grown, disks created, disks of
// other VMs or snapshots hot-added or removed.
func (h *vmHandler) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	s := h.sim
	body := &methods.ReconfigVM_TaskBody{Res: &types.ReconfigVM_TaskResponse{}}
	s.mu.Lock()
	vm, ok := s.byRef[h.Self.Value]
	s.mu.Unlock()
	if !ok {
		if vm, ok = s.adopt(h.VirtualMachine, req); !ok {
			return h.VirtualMachine.ReconfigVMTask(ctx, req)
		}
	}
	if f := s.checkSpace(req); f != nil {
		body.Res.Returnval = failedTask(ctx, h.Self, "reconfigVm", f)
		return body
	}
	if req.Spec.ChangeTrackingEnabled != nil && *req.Spec.ChangeTrackingEnabled && vm.hwVersion < 7 {
		body.Res.Returnval = failedTask(ctx, h.Self, "reconfigVm", &types.NotSupported{RuntimeFault: types.RuntimeFault{
			MethodFault: types.MethodFault{FaultMessage: []types.LocalizableMessage{{
				Key:     "msg.changeTracking.unsupportedHWVersion",
				Message: fmt.Sprintf("Changed Block Tracking requires virtual hardware version 7 or later; this VM is vmx-%02d", vm.hwVersion),
			}}},
		}})
		return body
	}
	// Disks the spec creates: vcsim may choose their names, so a disk
	// that appears after a create operation is new.
	creates := false
	for _, dc := range req.Spec.DeviceChange {
		spec := dc.GetVirtualDeviceConfigSpec()
		if _, ok := spec.Device.(*types.VirtualDisk); ok && spec.FileOperation == types.VirtualDeviceConfigSpecFileOperationCreate {
			creates = true
		}
	}
	before := diskFileNames(h.Config.Hardware.Device)
	restore := flatRDMs(h.VirtualMachine)
	ref, fault := taskRef(h.VirtualMachine.ReconfigVMTask(ctx, req))
	if fault == nil {
		_, fault = waitTask(ctx, ref)
	}
	restore()
	if fault != nil {
		if ref.Value == "" {
			ref = failedTask(ctx, h.Self, "reconfigVm", fault)
		}
		body.Res.Returnval = ref
		return body
	}
	created := map[string]bool{}
	if creates {
		for name := range diskFileNames(h.Config.Hardware.Device) {
			if !before[name] {
				created[name] = true
			}
		}
	}
	s.destroyRemovedFiles(req)
	if err := s.syncVM(vm, h.VirtualMachine, created); err != nil {
		s.log.Error("sync vm after reconfigure", "vm", vm.name, "err", err)
	}
	// ESXi rewrites the .vmx on every reconfiguration.
	if err := s.writeVMX(h.VirtualMachine); err != nil {
		s.log.Error("write .vmx after reconfigure", "vm", vm.name, "err", err)
	}
	body.Res.Returnval = ref
	return body
}

// syncVM reconciles our state with vcsim's config of the VM after a
// reconfiguration; the caller holds vcsim's lock on the VM.
func (s *Sim) syncVM(vm *vmState, obj *simulator.VirtualMachine, created map[string]bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cbt := obj.Config.ChangeTrackingEnabled != nil && *obj.Config.ChangeTrackingEnabled
	if cbt != vm.cbt {
		vm.cbt = cbt
		for _, d := range vm.disks {
			if err := d.track.start(cbt, d.size); err != nil {
				return err
			}
		}
		op := OpCBTDisable
		if cbt {
			op = OpCBTEnable
		}
		s.record(JournalEntry{Op: op, VM: vm.name, Disk: -1})
	}
	own := map[string]*diskState{}
	for _, d := range vm.disks {
		own[d.dsPath] = d
	}
	var kept []*diskState
	attached := map[string]bool{}
	var firstErr error
	for disk, b := range flatDisks(obj.Config.Hardware.Device) {
		if d := own[b.FileName]; d != nil {
			d.key = disk.Key
			if disk.CapacityInBytes > d.size {
				if err := s.growLocked(d, disk.CapacityInBytes); err != nil && firstErr == nil {
					firstErr = err
				}
			}
			kept = append(kept, d)
			continue
		}
		if uuid, size, ok := s.knownFileLocked(b.FileName); ok {
			// HotAdd of another VM's disk or of a snapshot's frozen disk.
			attached[b.FileName] = true
			b.Uuid = uuid
			disk.CapacityInBytes, disk.CapacityInKB = size, size/1024
			continue
		}
		if created[b.FileName] {
			d, err := s.newDiskLocked(vm, disk, b)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			kept = append(kept, d)
		}
	}
	kept = append(kept, keptRDMs(vm, obj.Config.Hardware.Device)...)
	for i, d := range kept {
		d.index = i
	}
	vm.disks = kept
	vm.attached = attached
	return firstErr
}

// knownFileLocked reports the uuid and size of a disk file that esxsim
// made: a VM's disk or a snapshot's frozen copy; s.mu held.
func (s *Sim) knownFileLocked(dsPath string) (string, int64, bool) {
	for _, vm := range s.vms {
		for _, d := range vm.disks {
			if d.dsPath == dsPath {
				return d.uuid, d.size, true
			}
		}
	}
	for _, snap := range s.snapshots {
		for _, fd := range snap.disks {
			if fd.dsPath == dsPath {
				return fd.disk.uuid, fd.size, true
			}
		}
	}
	return "", 0, false
}

// newDiskLocked makes the files of a disk added to vm with fileOperation=create.
func (s *Sim) newDiskLocked(vm *vmState, disk *types.VirtualDisk, b *types.VirtualDiskFlatVer2BackingInfo) (*diskState, error) {
	local, err := s.localDescriptor(b.FileName)
	if err != nil {
		return nil, err
	}
	uuid, err := newDiskUUID()
	if err != nil {
		return nil, err
	}
	d := &diskState{
		vm: vm, key: disk.Key, controller: ControllerSCSI, uuid: uuid, dsPath: b.FileName,
		descPath: local, flatPath: flatName(local), size: disk.CapacityInBytes,
	}
	if d.size <= 0 || d.size%vmdkSector != 0 {
		return nil, fmt.Errorf("new disk %s: capacity %d is not a positive multiple of 512", b.FileName, d.size)
	}
	if err := createFlat(d.flatPath, d.size); err != nil {
		return nil, err
	}
	if err := writeDescriptor(d.descPath, d.size, uuid, adapterType(d.controller), vm.hwVersion); err != nil {
		return nil, err
	}
	if b.ThinProvisioned == nil || !*b.ThinProvisioned {
		if err := allocateThick(d.flatPath, d.size); err != nil {
			return nil, err
		}
	}
	if err := d.track.start(vm.cbt, d.size); err != nil {
		return nil, err
	}
	b.Uuid = uuid
	return d, nil
}

const vmdkSector = 512

// growLocked extends a disk's flat file and descriptor. Like ESXi after an
// extend, change tracking starts a new epoch: older changeIds are refused
// and the next backup has to read the whole disk. s.mu held.
func (s *Sim) growLocked(d *diskState, size int64) error {
	if size <= d.size {
		return nil
	}
	if err := createFlat(d.flatPath, size); err != nil {
		return err
	}
	if err := writeDescriptor(d.descPath, size, d.uuid, adapterType(d.controller), d.vm.hwVersion); err != nil {
		return err
	}
	old := d.size
	d.size = size
	if err := d.track.start(d.track.epoch != "", size); err != nil {
		return err
	}
	s.record(JournalEntry{Op: OpGrow, VM: d.vm.name, Disk: d.index, Offset: old, Length: size - old})
	return nil
}

// diskFileNames is the set of backing file names of the disks in devices.
func diskFileNames(devices []types.BaseVirtualDevice) map[string]bool {
	out := map[string]bool{}
	for _, dev := range devices {
		if disk, ok := dev.(*types.VirtualDisk); ok {
			if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				out[b.GetVirtualDeviceFileBackingInfo().FileName] = true
			}
		}
	}
	return out
}

package esxsim

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CreateSnapshotTask freezes the VM's disks and then lets vcsim record the snapshot.
func (h *vmHandler) CreateSnapshotTask(ctx *simulator.Context, req *types.CreateSnapshot_Task) soap.HasFault {
	ex := &types.CreateSnapshotEx_Task{This: req.This, Name: req.Name, Description: req.Description, Memory: req.Memory}
	if req.Quiesce {
		ex.QuiesceSpec = &types.VirtualMachineGuestQuiesceSpec{}
	}
	return &methods.CreateSnapshot_TaskBody{Res: &types.CreateSnapshot_TaskResponse{Returnval: h.createSnapshot(ctx, ex)}}
}

// CreateSnapshotExTask is CreateSnapshotTask with a quiesce spec.
func (h *vmHandler) CreateSnapshotExTask(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	return &methods.CreateSnapshotEx_TaskBody{Res: &types.CreateSnapshotEx_TaskResponse{Returnval: h.createSnapshot(ctx, req)}}
}

func (h *vmHandler) createSnapshot(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) types.ManagedObjectReference {
	s := h.sim
	s.mu.Lock()
	vm, ok := s.byRef[h.Self.Value]
	if !ok {
		s.mu.Unlock()
		ref, _ := taskRef(h.VirtualMachine.CreateSnapshotExTask(ctx, req))
		return ref
	}
	if vm.snapFault != nil {
		f := vm.snapFault
		s.mu.Unlock()
		return failedTask(ctx, h.Self, "createSnapshot", f)
	}
	quiesce := req.QuiesceSpec != nil && h.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	if quiesce && vm.failQuiesce {
		s.mu.Unlock()
		return failedTask(ctx, h.Self, "createSnapshot", &types.ApplicationQuiesceFault{
			SnapshotFault: types.SnapshotFault{VimFault: types.VimFault{MethodFault: types.MethodFault{
				FaultMessage: []types.LocalizableMessage{{
					Key:     "msg.snapshot.quiesce.vmerr",
					Message: "An error occurred while quiescing the virtual machine. The error code was: 4 (quiesce failed)",
				}},
			}}},
		})
	}
	vm.nextSnap++
	frozen, err := s.freezeDisks(vm, vm.nextSnap)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("freeze disks", "vm", vm.name, "err", err)
		return failedTask(ctx, h.Self, "createSnapshot", &types.FileFault{File: err.Error()})
	}
	var parent string
	if h.Snapshot != nil && h.Snapshot.CurrentSnapshot != nil {
		parent = h.Snapshot.CurrentSnapshot.Value
	}
	ref, fault := taskRef(h.VirtualMachine.CreateSnapshotExTask(ctx, req))
	if fault == nil {
		var res types.AnyType
		if res, fault = waitTask(ctx, ref); fault == nil {
			snapRef, _ := res.(types.ManagedObjectReference)
			fault = h.adoptSnapshot(ctx, vm, snapRef, parent, req.Name, frozen)
		}
	}
	if fault != nil {
		removeFrozen(frozen)
		if ref.Value == "" {
			return failedTask(ctx, h.Self, "createSnapshot", fault)
		}
	}
	return ref
}

// freezeDisks copies every disk of vm to its snapshot file and captures
// its change tracking; s.mu is held so no guest write interleaves.
func (s *Sim) freezeDisks(vm *vmState, n int) ([]*frozenDisk, error) {
	var out []*frozenDisk
	for _, d := range vm.disks {
		rel := strings.TrimSuffix(datastoreRelative(d.dsPath), ".vmdk") + fmt.Sprintf("-%06d.vmdk", n)
		fd := &frozenDisk{
			disk: d, key: d.key, size: d.size,
			dsPath:   fmt.Sprintf("[%s] %s", s.Datastore, rel),
			descPath: filepath.Join(s.DatastoreDir, filepath.FromSlash(rel)),
		}
		fd.flatPath = flatName(fd.descPath)
		if err := cloneFile(d.flatPath, fd.flatPath); err != nil {
			removeFrozen(out)
			return nil, err
		}
		if err := writeDescriptor(fd.descPath, fd.size, d.uuid, adapterType(d.controller), vm.hwVersion); err != nil {
			removeFrozen(append(out, fd))
			return nil, err
		}
		fd.track = d.track.freeze()
		out = append(out, fd)
	}
	return out, nil
}

func removeFrozen(disks []*frozenDisk) {
	for _, fd := range disks {
		_ = os.Remove(fd.flatPath)
		_ = os.Remove(fd.descPath)
	}
}

// adoptSnapshot points the new snapshot's disks at the frozen copies, with
// the changeIds of this moment, and records it.
func (h *vmHandler) adoptSnapshot(ctx *simulator.Context, vm *vmState, ref types.ManagedObjectReference, parent, name string, frozen []*frozenDisk) types.BaseMethodFault {
	snap, ok := ctx.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return &types.ManagedObjectNotFound{Obj: ref}
	}
	byKey := map[int32]*frozenDisk{}
	for _, fd := range frozen {
		byKey[fd.key] = fd
	}
	ctx.WithLock(snap, func() {
		devices := make([]types.BaseVirtualDevice, 0, len(snap.Config.Hardware.Device))
		for _, dev := range snap.Config.Hardware.Device {
			disk, isDisk := dev.(*types.VirtualDisk)
			fd := byKey[dev.GetVirtualDevice().Key]
			if !isDisk || fd == nil || !fd.disk.snapshotted() {
				// independent disks and physical RDMs stay out of the
				// snapshot: its configuration names the live disk (edges.go)
				devices = append(devices, shallowCopy(dev))
				continue
			}
			nd := *disk
			if b, ok := disk.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo); ok {
				nb := *b
				nb.FileName, nb.ChangeId, nb.Parent = fd.dsPath, fd.track.changeID(), nil
				nd.Backing = &nb
			}
			if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
				nb := *b
				nb.FileName = fd.dsPath
				nb.ChangeId = fd.track.changeID()
				nb.Uuid = fd.disk.uuid
				nb.Parent = nil
				nd.Backing = &nb
			}
			nd.CapacityInBytes = fd.size
			nd.CapacityInKB = fd.size / 1024
			devices = append(devices, &nd)
		}
		snap.Config.Hardware.Device = devices
	})
	// The running disks report the changeId of the newest snapshot, as ESXi's do.
	for _, dev := range h.Config.Hardware.Device {
		if fd := byKey[dev.GetVirtualDevice().Key]; fd != nil {
			if b, ok := dev.GetVirtualDevice().Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
				b.ChangeId = fd.track.changeID()
			}
		}
	}
	s := h.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots[ref.Value] = &snapState{ref: ref, vm: vm, parent: parent, name: name, disks: frozen}
	for _, fd := range frozen {
		s.record(JournalEntry{Op: OpSnapshot, VM: vm.name, Disk: fd.disk.index, ChangeID: fd.track.changeID(), Snapshot: ref.Value})
	}
	return nil
}

// shallowCopy returns a copy of the device struct, so the snapshot's list
// does not alias the VM's.
func shallowCopy(dev types.BaseVirtualDevice) types.BaseVirtualDevice {
	v := reflect.ValueOf(dev)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return dev
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	if out, ok := c.Interface().(types.BaseVirtualDevice); ok {
		return out
	}
	return dev
}

// RemoveSnapshotTask refuses while a frozen disk is hot-added somewhere,
// else lets vcsim remove the snapshot and deletes the frozen copies.
func (h *snapshotHandler) RemoveSnapshotTask(ctx *simulator.Context, req *types.RemoveSnapshot_Task) soap.HasFault {
	s := h.sim
	body := &methods.RemoveSnapshot_TaskBody{Res: &types.RemoveSnapshot_TaskResponse{}}
	s.mu.Lock()
	victims := s.snapshotAndChildren(h.Self.Value, req.RemoveChildren)
	if locked := s.attachedFrozen(victims); locked != "" {
		s.mu.Unlock()
		body.Res.Returnval = failedTask(ctx, h.Vm, "removeSnapshot", &types.FileLocked{FileFault: types.FileFault{File: locked}})
		return body
	}
	s.mu.Unlock()
	var ref types.ManagedObjectReference
	var fault types.BaseMethodFault
	s.withFlatRDMs(h.Vm, func() {
		ref, fault = taskRef(h.VirtualMachineSnapshot.RemoveSnapshotTask(ctx, req))
		if fault == nil {
			_, fault = waitTask(ctx, ref)
		}
	})
	if fault != nil {
		if ref.Value == "" {
			ref = failedTask(ctx, h.Vm, "removeSnapshot", fault)
		}
		body.Res.Returnval = ref
		return body
	}
	s.forgetSnapshots(victims)
	body.Res.Returnval = ref
	return body
}

// RemoveAllSnapshotsTask removes every snapshot and its frozen copies.
func (h *vmHandler) RemoveAllSnapshotsTask(ctx *simulator.Context, req *types.RemoveAllSnapshots_Task) soap.HasFault {
	s := h.sim
	body := &methods.RemoveAllSnapshots_TaskBody{Res: &types.RemoveAllSnapshots_TaskResponse{}}
	s.mu.Lock()
	var victims []*snapState
	for _, snap := range s.snapshots {
		if snap.vm.ref == h.Self {
			victims = append(victims, snap)
		}
	}
	if locked := s.attachedFrozen(victims); locked != "" {
		s.mu.Unlock()
		body.Res.Returnval = failedTask(ctx, h.Self, "removeAllSnapshots", &types.FileLocked{FileFault: types.FileFault{File: locked}})
		return body
	}
	s.mu.Unlock()
	restore := flatRDMs(h.VirtualMachine)
	ref, fault := taskRef(h.VirtualMachine.RemoveAllSnapshotsTask(ctx, req))
	if fault == nil {
		_, fault = waitTask(ctx, ref)
	}
	restore()
	if fault == nil {
		s.forgetSnapshots(victims)
	} else if ref.Value == "" {
		ref = failedTask(ctx, h.Self, "removeAllSnapshots", fault)
	}
	body.Res.Returnval = ref
	return body
}

// snapshotAndChildren lists the snapshot and, if asked, its descendants; s.mu held.
func (s *Sim) snapshotAndChildren(ref string, children bool) []*snapState {
	snap, ok := s.snapshots[ref]
	if !ok {
		return nil
	}
	out := []*snapState{snap}
	if !children {
		return out
	}
	for i := 0; i < len(out); i++ {
		for _, c := range s.snapshots {
			if c.parent == out[i].ref.Value {
				out = append(out, c)
			}
		}
	}
	return out
}

// attachedFrozen returns a frozen disk of the snapshots that some VM has
// hot-added, "" if none; s.mu held.
func (s *Sim) attachedFrozen(snaps []*snapState) string {
	for _, snap := range snaps {
		for _, fd := range snap.disks {
			for _, vm := range s.vms {
				if vm.attached[fd.dsPath] {
					return fd.dsPath
				}
			}
		}
	}
	return ""
}

// forgetSnapshots deletes the frozen copies of removed snapshots. Children
// kept after removing their parent are re-parented, as ESXi does.
func (s *Sim) forgetSnapshots(snaps []*snapState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, snap := range snaps {
		removeFrozen(snap.disks)
		delete(s.snapshots, snap.ref.Value)
		for _, c := range s.snapshots {
			if c.parent == snap.ref.Value {
				c.parent = snap.parent
			}
		}
		s.record(JournalEntry{Op: OpRemoveSnapshot, VM: snap.vm.name, Disk: -1, Snapshot: snap.ref.Value})
	}
}

// datastoreRelative is the datastore-relative path of a datastore path.
func datastoreRelative(dsPath string) string {
	if i := strings.IndexByte(dsPath, ']'); i >= 0 {
		return path.Clean(strings.TrimSpace(dsPath[i+1:]))
	}
	return path.Clean(dsPath)
}

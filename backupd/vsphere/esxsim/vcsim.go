package esxsim

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// withVM runs f with vcsim's lock on the VM object held, on behalf of a
// private locking context (back doors run outside any SOAP request).
func (s *Sim) withVM(ref types.ManagedObjectReference, f func(ctx *simulator.Context, vm *simulator.VirtualMachine)) error {
	m := s.model.Map()
	vm, ok := m.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return fmt.Errorf("vm %s: %w", ref.Value, ErrNotFound)
	}
	lctx := &simulator.Context{Context: context.Background(), Map: m}
	lctx.WithLock(vm, func() { f(lctx, vm) })
	return nil
}

// fixupCreatedVM gives the VM's disks their uuids (vcsim derives its own
// from the file name) and clears the CBT capability of old hardware.
func (s *Sim) fixupCreatedVM(st *vmState) error {
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
				if d.dsPath == b.FileName {
					b.Uuid = d.uuid
					d.key = disk.Key
				}
			}
		}
		if st.hwVersion < 7 {
			vm.Capability.ChangeTrackingSupported = types.NewBool(false)
		}
	})
}

// waitTask waits for a vcsim task started in this request and returns its
// result or fault.
func waitTask(ctx *simulator.Context, ref types.ManagedObjectReference) (types.AnyType, types.BaseMethodFault) {
	t, ok := ctx.Map.Get(ref).(*simulator.Task)
	if !ok {
		return nil, &types.ManagedObjectNotFound{Obj: ref}
	}
	t.Wait()
	var info types.TaskInfo
	ctx.Map.WithLock(&simulator.Context{Context: ctx.Context, Map: ctx.Map}, t, func() { info = t.Info })
	if info.Error != nil {
		return nil, info.Error.Fault
	}
	return info.Result, nil
}

// failedTask starts a task on entity that fails with fault, as ESXi reports
// most operation failures through the task rather than the call.
func failedTask(ctx *simulator.Context, entity types.ManagedObjectReference, name string, fault types.BaseMethodFault) types.ManagedObjectReference {
	return simulator.CreateTask(entity, name, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, fault
	}).Run(ctx)
}

// taskRef extracts the returned task of a vcsim *_Task method body.
func taskRef(res soap.HasFault) (types.ManagedObjectReference, types.BaseMethodFault) {
	if f := res.Fault(); f != nil {
		if mf, ok := f.VimFault().(types.BaseMethodFault); ok {
			return types.ManagedObjectReference{}, mf
		}
		return types.ManagedObjectReference{}, &types.SystemError{Reason: f.String}
	}
	switch b := res.(type) {
	case *methods.CreateSnapshotEx_TaskBody:
		return b.Res.Returnval, nil
	case *methods.ReconfigVM_TaskBody:
		return b.Res.Returnval, nil
	case *methods.RemoveSnapshot_TaskBody:
		return b.Res.Returnval, nil
	case *methods.RemoveAllSnapshots_TaskBody:
		return b.Res.Returnval, nil
	}
	return types.ManagedObjectReference{}, &types.SystemError{Reason: fmt.Sprintf("unexpected task body %T", res)}
}

// route sends the calls the simulator must answer like ESXi to our
// handlers; every other call goes to vcsim unchanged.
func (s *Sim) route(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	switch m.This.Type {
	case "VirtualMachine":
		switch m.Name {
		case "QueryChangedDiskAreas", "CreateSnapshot_Task", "CreateSnapshotEx_Task",
			"ReconfigVM_Task", "RemoveAllSnapshots_Task":
			if vm, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachine); ok {
				return &vmHandler{VirtualMachine: vm, sim: s}, nil
			}
		}
	case "VirtualMachineSnapshot":
		if m.Name == "RemoveSnapshot_Task" {
			if snap, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachineSnapshot); ok {
				return &snapshotHandler{VirtualMachineSnapshot: snap, sim: s}, nil
			}
		}
	}
	return nil, nil
}

// vmHandler answers VirtualMachine calls; methods it does not define are
// vcsim's own (promoted from the embedded object).
type vmHandler struct {
	*simulator.VirtualMachine
	sim *Sim
}

// snapshotHandler answers VirtualMachineSnapshot calls.
type snapshotHandler struct {
	*simulator.VirtualMachineSnapshot
	sim *Sim
}

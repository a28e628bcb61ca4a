package esxsim

import (
	"context"
	"fmt"
	"time"

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
		for disk, b := range flatDisks(vm.Config.Hardware.Device) {
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

// failedTask registers a task on entity that has already failed with fault,
// as ESXi reports most operation failures through the task rather than the
// call. Its localized message is msg, or the fault's own message.
func failedTask(ctx *simulator.Context, entity types.ManagedObjectReference, name string, fault types.BaseMethodFault) types.ManagedObjectReference {
	msg := fmt.Sprintf("%T", fault)
	if m := fault.GetMethodFault().FaultMessage; len(m) > 0 {
		msg = m[0].Message
	} else if f, ok := fault.(*types.FileFault); ok {
		msg = "Error caused by file " + f.File
	} else if f, ok := fault.(*types.FileLocked); ok {
		msg = "Unable to access file " + f.File + " since it is locked"
	}
	t := simulator.CreateTask(entity, name, nil)
	now := time.Now()
	t.Info.State = types.TaskInfoStateError
	t.Info.StartTime = &now
	t.Info.CompleteTime = &now
	t.Info.Error = &types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
	ref := ctx.Map.Put(t).Reference()
	t.Info.Key = ref.Value
	t.Info.Task = ref
	return ref
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
	case *methods.Destroy_TaskBody:
		return b.Res.Returnval, nil
	case *methods.Rename_TaskBody:
		return b.Res.Returnval, nil
	}
	return types.ManagedObjectReference{}, &types.SystemError{Reason: fmt.Sprintf("unexpected task body %T", res)}
}

// router receives the calls the simulator must answer like ESXi. vcsim
// dispatches a call to the object its session finds for method.This, so
// route (vcsim's Registry.Handler hook) points method.This at the router,
// and the router hands the call to a handler wrapping the real object,
// holding that object's lock as vcsim would. The router itself opts out
// of vcsim's per-object locking (it implements sync.Locker).
type router struct {
	Self types.ManagedObjectReference
	sim  *Sim
}

func (r *router) Reference() types.ManagedObjectReference { return r.Self }

// Lock and Unlock are no-ops: each routed call locks the object it acts on.
func (r *router) Lock()   {}
func (r *router) Unlock() {}

// route is the Registry.Handler: it redirects the methods esxsim
// implements to the router; every other call goes to vcsim unchanged.
func (s *Sim) route(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	switch m.This.Type {
	case "VirtualMachine":
		switch m.Name {
		case "QueryChangedDiskAreas", "CreateSnapshot_Task", "CreateSnapshotEx_Task",
			"ReconfigVM_Task", "RemoveAllSnapshots_Task", "Destroy_Task", "Rename_Task",
			"PowerOnVM_Task", "RelocateVM_Task": // the last two: nas.go
			if _, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachine); ok {
				m.This = s.router.Self
				return s.router, nil
			}
		}
	case "HostDatastoreSystem":
		if m.Name == "CreateNasDatastore" || m.Name == "RemoveDatastore" { // nas.go
			m.This = s.router.Self
			return s.router, nil
		}
	case "ResourcePool":
		if m.Name == "ImportVApp" {
			m.This = s.router.Self
			return s.router, nil
		}
	case "VirtualMachineSnapshot":
		if m.Name == "RemoveSnapshot_Task" {
			if _, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachineSnapshot); ok {
				m.This = s.router.Self
				return s.router, nil
			}
		}
	}
	return nil, nil
}

// vmCall runs f with a handler for the VM this, holding its lock.
func (r *router) vmCall(ctx *simulator.Context, this types.ManagedObjectReference, f func(*vmHandler) soap.HasFault) soap.HasFault {
	vm, ok := ctx.Map.Get(this).(*simulator.VirtualMachine)
	if !ok {
		return &methods.QueryChangedDiskAreasBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: this})}
	}
	var res soap.HasFault
	ctx.WithLock(vm, func() { res = f(&vmHandler{VirtualMachine: vm, sim: r.sim}) })
	return res
}

// QueryChangedDiskAreas routes to vmHandler.QueryChangedDiskAreas.
func (r *router) QueryChangedDiskAreas(ctx *simulator.Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault { return h.QueryChangedDiskAreas(ctx, req) })
}

// CreateSnapshotTask routes to vmHandler.CreateSnapshotTask.
func (r *router) CreateSnapshotTask(ctx *simulator.Context, req *types.CreateSnapshot_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault { return h.CreateSnapshotTask(ctx, req) })
}

// CreateSnapshotExTask routes to vmHandler.CreateSnapshotExTask.
func (r *router) CreateSnapshotExTask(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault { return h.CreateSnapshotExTask(ctx, req) })
}

// ReconfigVMTask routes to vmHandler.ReconfigVMTask.
func (r *router) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault { return h.ReconfigVMTask(ctx, req) })
}

// RemoveAllSnapshotsTask routes to vmHandler.RemoveAllSnapshotsTask.
func (r *router) RemoveAllSnapshotsTask(ctx *simulator.Context, req *types.RemoveAllSnapshots_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault { return h.RemoveAllSnapshotsTask(ctx, req) })
}

// RemoveSnapshotTask routes to snapshotHandler.RemoveSnapshotTask.
func (r *router) RemoveSnapshotTask(ctx *simulator.Context, req *types.RemoveSnapshot_Task) soap.HasFault {
	snap, ok := ctx.Map.Get(req.This).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return &methods.RemoveSnapshot_TaskBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})}
	}
	var res soap.HasFault
	ctx.WithLock(snap, func() {
		res = (&snapshotHandler{VirtualMachineSnapshot: snap, sim: r.sim}).RemoveSnapshotTask(ctx, req)
	})
	return res
}

// vmHandler implements VirtualMachine methods on top of vcsim's object.
type vmHandler struct {
	*simulator.VirtualMachine
	sim *Sim
}

// snapshotHandler implements VirtualMachineSnapshot methods on top of vcsim's object.
type snapshotHandler struct {
	*simulator.VirtualMachineSnapshot
	sim *Sim
}

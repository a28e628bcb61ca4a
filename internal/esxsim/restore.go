package esxsim

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sys/unix"
)

// adopt starts tracking a VM that was created through the API (CreateVM_
// Task, as a restore does) when a reconfiguration creates disks on it, so
// that its disks become real flat files like those of the VMs the options
// made. It reports false for a VM without disk creation in req (vcsim
// handles it alone). The caller holds vcsim's lock on the VM.
func (s *Sim) adopt(obj *simulator.VirtualMachine, req *types.ReconfigVM_Task) (*vmState, bool) {
	creates := false
	for _, dc := range req.Spec.DeviceChange {
		spec := dc.GetVirtualDeviceConfigSpec()
		if _, ok := spec.Device.(*types.VirtualDisk); ok && spec.FileOperation == types.VirtualDeviceConfigSpecFileOperationCreate {
			creates = true
		}
	}
	if !creates {
		return nil, false
	}
	hw, _ := hardwareVersionNumber(obj.Config.Version)
	if hw == 0 {
		hw, _ = hardwareVersionNumber(DefaultHardwareVersion)
	}
	vm := &vmState{name: obj.Name, ref: obj.Self, hwVersion: hw, attached: map[string]bool{}}
	vm.cbt = obj.Config.ChangeTrackingEnabled != nil && *obj.Config.ChangeTrackingEnabled
	s.mu.Lock()
	s.vms[vm.name] = vm
	s.byRef[vm.ref.Value] = vm
	s.mu.Unlock()
	if err := s.writeVMX(obj); err != nil {
		s.log.Error("write .vmx of an adopted VM", "vm", vm.name, "err", err)
	}
	if err := s.writeNVRAM(obj); err != nil {
		s.log.Error("write .nvram of an adopted VM", "vm", vm.name, "err", err)
	}
	return vm, true
}

// SetDatastoreFree limits the space left on the datastore for disks
// created from now on (thick and eager disks take their capacity at
// creation; thin ones nothing), as a full datastore would; a negative
// value removes the limit. A creation that does not fit fails through its
// task with InsufficientDisk... as ESXi does (NoDiskSpace).
func (s *Sim) SetDatastoreFree(bytes int64) {
	s.mu.Lock()
	s.dsFree = bytes
	s.dsLimited = bytes >= 0
	s.mu.Unlock()
}

// checkSpace fails a reconfiguration whose new thick disks do not fit in
// the space SetDatastoreFree left, and takes that space otherwise.
func (s *Sim) checkSpace(req *types.ReconfigVM_Task) types.BaseMethodFault {
	return s.checkSpaceFor(req.Spec.DeviceChange)
}

// checkSpaceFor fails the creation of the thick disks among changes that
// do not fit: in the space SetDatastoreFree left, or, without that limit,
// in the space free on the datastore's directory (a thick disk takes its
// blocks with fallocate, which would fill the machine's own disk first).
func (s *Sim) checkSpaceFor(changes []types.BaseVirtualDeviceConfigSpec) types.BaseMethodFault {
	var need int64
	for _, dc := range changes {
		spec := dc.GetVirtualDeviceConfigSpec()
		disk, ok := spec.Device.(*types.VirtualDisk)
		if !ok || spec.FileOperation != types.VirtualDeviceConfigSpecFileOperationCreate {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if ok && b.ThinProvisioned != nil && *b.ThinProvisioned {
			continue
		}
		need += disk.CapacityInBytes
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if need == 0 {
		return nil
	}
	free := s.dsFree
	if !s.dsLimited {
		var st unix.Statfs_t
		if unix.Statfs(s.DatastoreDir, &st) != nil {
			return nil
		}
		free = int64(st.Bavail) * st.Bsize
	}
	if need > free {
		return &types.NoDiskSpace{
			FileFault: types.FileFault{VimFault: types.VimFault{MethodFault: types.MethodFault{FaultMessage: []types.LocalizableMessage{{
				Key:     "msg.disk.noBackEnd",
				Message: fmt.Sprintf("There is not enough space on the file system for the selected operation: %d bytes needed, %d free", need, free),
			}}}}},
			Datastore: s.Datastore,
		}
	}
	if s.dsLimited {
		s.dsFree -= need
	}
	return nil
}

// allocateThick gives a thick disk's flat file its blocks (fallocate
// without changing the contents), as a thick VMDK on VMFS owns its space.
func allocateThick(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size); err != nil && err != unix.EOPNOTSUPP {
		return fmt.Errorf("allocate thick disk %s: %w", path, err)
	}
	return nil
}

// DestroyTask lets vcsim destroy the VM, deletes its directory before the
// task completes (as ESXi does; vcsim deletes it in a task of its own
// that may finish later) and forgets esxsim's state of the VM.
func (h *vmHandler) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	// The VM's directory, and those of its own disks on other datastores
	// (ESXi deletes a VM's disks wherever they are).
	var dirs []string
	vmDir := func(dsPath string) {
		local, err := h.sim.localDescriptor(dsPath)
		if err != nil {
			return
		}
		dir := filepath.Dir(local)
		for _, root := range h.sim.dsDirs {
			if dir == filepath.Clean(root) {
				return
			}
		}
		if !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	if h.Config != nil {
		vmDir(h.Config.Files.VmPathName)
	}
	h.sim.mu.Lock()
	if vm, ok := h.sim.byRef[h.Self.Value]; ok {
		for _, d := range vm.disks {
			vmDir(d.dsPath)
		}
	}
	h.sim.mu.Unlock()
	res := h.VirtualMachine.DestroyTask(ctx, req)
	ref, fault := taskRef(res)
	if fault == nil {
		_, fault = waitTask(ctx, ref)
	}
	if fault == nil {
		s := h.sim
		for _, dir := range dirs {
			if err := os.RemoveAll(dir); err != nil {
				s.log.Error("delete the directory of a destroyed VM", "dir", dir, "err", err)
			}
		}
		s.mu.Lock()
		if vm, ok := s.byRef[h.Self.Value]; ok {
			delete(s.byRef, h.Self.Value)
			if s.vms[vm.name] == vm {
				delete(s.vms, vm.name)
			}
		}
		s.mu.Unlock()
	}
	return res
}

// RenameTask lets vcsim rename the VM and follows under the new name.
func (h *vmHandler) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	res := h.VirtualMachine.RenameTask(ctx, req)
	ref, fault := taskRef(res)
	if fault == nil {
		_, fault = waitTask(ctx, ref)
	}
	if fault == nil {
		s := h.sim
		s.mu.Lock()
		if vm, ok := s.byRef[h.Self.Value]; ok {
			if s.vms[vm.name] == vm {
				delete(s.vms, vm.name)
			}
			vm.name = req.NewName
			s.vms[vm.name] = vm
		}
		s.mu.Unlock()
	}
	return res
}

// DestroyTask routes to vmHandler.DestroyTask.
func (r *router) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault { return h.DestroyTask(ctx, req) })
}

// RenameTask routes to vmHandler.RenameTask.
func (r *router) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault { return h.RenameTask(ctx, req) })
}

// DiskLocalPaths lists the local flat files of the named VM's disks by
// device name ("scsi0-1" as cairn names disks: controller bus and unit).
func (s *Sim) DiskLocalPaths(vmName string) (map[string]string, error) {
	ref, err := s.VMRef(vmName)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	err = s.withVM(ref, func(_ *simulator.Context, vm *simulator.VirtualMachine) {
		ctrl := map[int32]string{}
		for _, dev := range vm.Config.Hardware.Device {
			switch c := dev.(type) {
			case types.BaseVirtualSCSIController:
				ctrl[dev.GetVirtualDevice().Key] = "scsi" + strconv.Itoa(int(c.GetVirtualSCSIController().BusNumber))
			case types.BaseVirtualSATAController:
				ctrl[dev.GetVirtualDevice().Key] = "sata" + strconv.Itoa(int(c.GetVirtualSATAController().BusNumber))
			case *types.VirtualNVMEController:
				ctrl[dev.GetVirtualDevice().Key] = "nvme" + strconv.Itoa(int(c.BusNumber))
			}
		}
		for _, dev := range vm.Config.Hardware.Device {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok || disk.UnitNumber == nil {
				continue
			}
			b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
			if !ok {
				continue
			}
			p, perr := s.LocalPath(b.GetVirtualDeviceFileBackingInfo().FileName)
			if perr != nil {
				err = perr
				return
			}
			out[ctrl[disk.ControllerKey]+"-"+strconv.Itoa(int(*disk.UnitNumber))] = p
		}
	})
	return out, err
}

// destroyRemovedFiles deletes the descriptor and flat file of every disk
// that req removes with fileOperation=destroy (vcsim removes only the file
// the backing names, not the flat extent beside it).
func (s *Sim) destroyRemovedFiles(req *types.ReconfigVM_Task) {
	for _, dc := range req.Spec.DeviceChange {
		spec := dc.GetVirtualDeviceConfigSpec()
		disk, ok := spec.Device.(*types.VirtualDisk)
		if !ok || spec.Operation != types.VirtualDeviceConfigSpecOperationRemove || spec.FileOperation != types.VirtualDeviceConfigSpecFileOperationDestroy {
			continue
		}
		b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			continue
		}
		desc, err := s.localDescriptor(b.GetVirtualDeviceFileBackingInfo().FileName)
		if err != nil {
			continue
		}
		_ = os.Remove(desc)
		_ = os.Remove(flatName(desc))
	}
}

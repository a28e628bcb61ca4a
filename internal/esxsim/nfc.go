package esxsim

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vmdkstream"
)

// ImportVApp lets vcsim create the VM of a VirtualMachineImportSpec and
// its HttpNfcLease, then gives the VM's disks real (empty) flat files, so
// that the lease's uploads (serveNFCUpload) land in them as on ESXi.
func (r *router) ImportVApp(ctx *simulator.Context, req *types.ImportVApp) soap.HasFault {
	pool, ok := ctx.Map.Get(req.This).(*simulator.ResourcePool)
	if !ok {
		return &methods.ImportVAppBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})}
	}
	r.sim.mu.Lock()
	deny := r.sim.denyImport
	r.sim.mu.Unlock()
	if deny {
		return &methods.ImportVAppBody{Fault_: simulator.Fault("Permission to perform this operation was denied.",
			&types.NoPermission{Object: &req.This, PrivilegeId: "VApp.Import"})}
	}
	if is, ok := req.Spec.(*types.VirtualMachineImportSpec); ok {
		if f := r.sim.checkSpaceFor(is.ConfigSpec.DeviceChange); f != nil {
			msg := "There is not enough space on the file system for the selected operation"
			if m := f.GetMethodFault().FaultMessage; len(m) > 0 {
				msg = m[0].Message
			}
			return &methods.ImportVAppBody{Fault_: simulator.Fault(msg, f)}
		}
	}
	var res soap.HasFault
	ctx.WithLock(pool, func() { res = pool.ImportVApp(ctx, req) })
	body, ok := res.(*methods.ImportVAppBody)
	if !ok || body.Fault_ != nil || body.Res == nil {
		return res
	}
	leaseRef := body.Res.Returnval
	// vcsim creates the VM in a task of its own: wait for the lease.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		lease, ok := ctx.Session.Get(leaseRef).(*simulator.HttpNfcLease) // leases live in the session
		if !ok {
			break
		}
		var state types.HttpNfcLeaseState
		var entity types.ManagedObjectReference
		ctx.WithLock(lease, func() {
			state = lease.State
			if lease.Info != nil {
				entity = lease.Info.Entity
			}
		})
		if state == types.HttpNfcLeaseStateReady {
			r.sim.log.Debug("import lease ready", "lease", leaseRef.Value, "vm", entity.Value)
			r.sim.adoptImported(ctx, entity)
			r.sim.mu.Lock()
			r.sim.leases[leaseRef.Value] = entity.Value
			r.sim.mu.Unlock()
			break
		}
		if state == types.HttpNfcLeaseStateError {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return res
}

// adoptImported tracks an imported VM and makes its disks' files.
func (s *Sim) adoptImported(ctx *simulator.Context, ref types.ManagedObjectReference) {
	obj, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		s.log.Error("imported VM not found", "vm", ref.Value)
		return
	}
	ctx.WithLock(obj, func() {
		hw, _ := hardwareVersionNumber(obj.Config.Version)
		if hw == 0 {
			hw, _ = hardwareVersionNumber(DefaultHardwareVersion)
		}
		vm := &vmState{name: obj.Name, ref: obj.Self, hwVersion: hw, attached: map[string]bool{}}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.vms[vm.name] = vm
		s.byRef[vm.ref.Value] = vm
		for disk, b := range flatDisks(obj.Config.Hardware.Device) {
			d, err := s.newDiskLocked(vm, disk, b)
			if err != nil {
				s.log.Error("disk of an imported VM", "vm", vm.name, "err", err)
				continue
			}
			d.index = len(vm.disks)
			vm.disks = append(vm.disks, d)
		}
		if err := s.writeVMX(obj); err != nil {
			s.log.Error("write .vmx of an imported VM", "vm", vm.name, "err", err)
		}
		if err := s.writeNVRAM(obj); err != nil {
			s.log.Error("write .nvram of an imported VM", "vm", vm.name, "err", err)
		}
	})
}

// serveNFCUpload receives a lease's disk upload (PUT or POST of a
// streamOptimized VMDK to /nfc/<lease>/<disk file>) and converts it into
// the disk's flat file as ESXi does: stored grains written, the rest left
// as holes. vcsim's own handler only counts the bytes.
func (s *Sim) serveNFCUpload(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/nfc/"), "/")
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	var flat, vmName string
	s.mu.Lock()
	vmRef, ok := s.leases[parts[0]] // leases live in vcsim's session registry
	if vm, found := s.byRef[vmRef]; ok && found {
		vmName = vm.name
		for _, d := range vm.disks {
			if path.Base(d.dsPath) == parts[1] {
				flat = d.flatPath
			}
		}
	}
	s.mu.Unlock()
	if flat == "" {
		s.log.Warn("NFC upload for an unknown disk", "lease", parts[0], "disk", parts[1])
		http.Error(w, "no such disk in the lease", http.StatusNotFound)
		return
	}
	f, err := os.OpenFile(flat, os.O_RDWR, 0)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	size := st.Size()
	capacity, written, err := vmdkstream.Convert(r.Body, f)
	if err == nil && capacity != size {
		err = fmt.Errorf("the uploaded disk has %d bytes, the VM's disk %d", capacity, size)
	}
	if err == nil {
		err = f.Truncate(size)
	}
	if err != nil {
		s.log.Error("NFC upload", "file", flat, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.record(JournalEntry{Op: OpNFCUpload, VM: vmName, Disk: -1, Length: written})
	w.WriteHeader(http.StatusOK)
}

// SetDenyImport makes ImportVApp fail with NoPermission (privilege
// VApp.Import), as for a user whose role lacks it.
func (s *Sim) SetDenyImport(deny bool) {
	s.mu.Lock()
	s.denyImport = deny
	s.mu.Unlock()
}

package backupd

import (
	"context"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// RestoreHypervisor is what a restore asks of the virtualization platform
// on top of Hypervisor: create a VM from a recorded configuration (with
// empty disks, or filled in the same step by an import), find, rename and
// destroy VMs, power operations, the changed areas of a powered-off VM's
// disks (quick rollback), disks added to and removed from a VM, and the
// proxy VM a hotadd restore writes through. Restore, RestoreDisk and
// CleanupRestores talk to it only; NewVSphere implements it.
//
// VMs are *vsphere.VM values an implementation builds (Ref, Name, Disks
// and VMPathName are what a restore reads).
type RestoreHypervisor interface {
	Hypervisor
	// LookupVM finds a VM by name, inventory path or id, templates and VMs
	// without disks included, and reads its facts; vsphere.ErrVMNotFound
	// when there is none.
	LookupVM(ctx context.Context, spec string) (*vsphere.VM, error)
	// CreateVM creates a powered-off VM from spec.Config with empty disks
	// of the recorded capacities. The VM carries the restore marker
	// (vsphere.RestoreMarkerKey) until FinishRestore; a VM of the name
	// that exists already is vsphere.ErrVMExists; on an error nothing is
	// left.
	CreateVM(ctx context.Context, spec vsphere.CreateSpec) (*vsphere.CreatedVM, error)
	// ImportVM creates the VM of spec and fills its disks in the same step
	// (the nfc write transport): upload is called once per disk with a
	// function that sends a streamOptimized VMDK. On an error nothing is
	// left.
	ImportVM(ctx context.Context, spec vsphere.CreateSpec, upload vsphere.UploadFunc) (*vsphere.CreatedVM, error)
	// FinishRestore removes the restore marker and sets the annotation.
	FinishRestore(ctx context.Context, vm *vsphere.VM, annotation string) error
	// IncompleteRestores lists the VMs still carrying the restore marker.
	IncompleteRestores(ctx context.Context) ([]vsphere.IncompleteRestore, error)
	// DestroyVM powers a VM off and deletes it with its files; it runs
	// also after ctx of the restore ended.
	DestroyVM(ctx context.Context, vm *vsphere.VM) error
	// RenameVM renames a VM.
	RenameVM(ctx context.Context, vm *vsphere.VM, name string) error
	// PoweredOff reports whether the VM is powered off.
	PoweredOff(ctx context.Context, vm *vsphere.VM) (bool, error)
	// PowerOff powers a VM off (hard); nothing when it is off.
	PowerOff(ctx context.Context, vm *vsphere.VM) error
	// PowerOn powers a VM on.
	PowerOn(ctx context.Context, vm *vsphere.VM) error
	// ChangedAreasOfBase lists the areas of a powered-off VM's disk (no
	// snapshot) changed since changeID; a changeId of another epoch is a
	// *vsphere.ChangeIDRejectedError.
	ChangedAreasOfBase(ctx context.Context, vm *vsphere.VM, disk vsphere.Disk, changeID string) ([]vsphere.Extent, error)
	// AddDisk creates a new empty disk on a VM and returns it.
	AddDisk(ctx context.Context, vm *vsphere.VM, spec vsphere.AddDiskSpec) (vsphere.Disk, error)
	// RemoveDisk detaches a disk from a VM and deletes its files; it runs
	// also after ctx of the restore ended.
	RemoveDisk(ctx context.Context, vm *vsphere.VM, disk vsphere.Disk) error
	// FindRestoreProxy selects the proxy VM a hotadd restore attaches the
	// disks it writes to.
	FindRestoreProxy(ctx context.Context, spec string) (RestoreProxy, error)
}

// RestoreProxy is the appliance's own VM as a hotadd restore uses it.
type RestoreProxy interface {
	Name() string
	// AttachForWrite hot-adds a disk file in persistent mode: what the
	// proxy writes to the device lands in the file.
	AttachForWrite(ctx context.Context, fileName string) (vsphere.HotAdded, error)
	Detach(key int32) error
	// DetachFolder detaches every disk whose file lives in the datastore
	// folder of vmxPath (what a killed restore of that VM left attached)
	// and returns their files.
	DetachFolder(ctx context.Context, vmxPath string) ([]string, error)
}

func (h vsphereHypervisor) LookupVM(ctx context.Context, spec string) (*vsphere.VM, error) {
	ref, err := h.conn.LookupVM(ctx, spec)
	if err != nil {
		return nil, err
	}
	return h.conn.LoadVM(ctx, ref)
}

func (h vsphereHypervisor) CreateVM(ctx context.Context, spec vsphere.CreateSpec) (*vsphere.CreatedVM, error) {
	return h.conn.CreateVM(ctx, spec)
}

func (h vsphereHypervisor) ImportVM(ctx context.Context, spec vsphere.CreateSpec, upload vsphere.UploadFunc) (*vsphere.CreatedVM, error) {
	return h.conn.ImportVM(ctx, spec, upload)
}

func (h vsphereHypervisor) FinishRestore(ctx context.Context, vm *vsphere.VM, annotation string) error {
	return h.conn.FinishRestore(ctx, vm.Ref, annotation)
}

func (h vsphereHypervisor) IncompleteRestores(ctx context.Context) ([]vsphere.IncompleteRestore, error) {
	return h.conn.IncompleteRestores(ctx)
}

func (h vsphereHypervisor) DestroyVM(ctx context.Context, vm *vsphere.VM) error {
	return h.conn.DestroyVM(ctx, vm.Ref)
}

func (h vsphereHypervisor) RenameVM(ctx context.Context, vm *vsphere.VM, name string) error {
	return h.conn.RenameVM(ctx, vm.Ref, name)
}

func (h vsphereHypervisor) PoweredOff(ctx context.Context, vm *vsphere.VM) (bool, error) {
	return h.conn.PoweredOff(ctx, vm.Ref)
}

func (h vsphereHypervisor) PowerOff(ctx context.Context, vm *vsphere.VM) error {
	return h.conn.PowerOff(ctx, vm.Ref)
}

func (h vsphereHypervisor) PowerOn(ctx context.Context, vm *vsphere.VM) error {
	return h.conn.PowerOn(ctx, vm.Ref)
}

func (h vsphereHypervisor) ChangedAreasOfBase(ctx context.Context, vm *vsphere.VM, disk vsphere.Disk, changeID string) ([]vsphere.Extent, error) {
	return vm.ChangedAreasOfBase(ctx, disk, changeID)
}

func (h vsphereHypervisor) AddDisk(ctx context.Context, vm *vsphere.VM, spec vsphere.AddDiskSpec) (vsphere.Disk, error) {
	return h.conn.AddDisk(ctx, vm.Ref, spec)
}

func (h vsphereHypervisor) RemoveDisk(ctx context.Context, vm *vsphere.VM, disk vsphere.Disk) error {
	return h.conn.RemoveDisk(ctx, vm.Ref, disk.Key)
}

func (h vsphereHypervisor) FindRestoreProxy(ctx context.Context, spec string) (RestoreProxy, error) {
	p, err := h.conn.FindProxy(ctx, spec)
	if err != nil {
		return nil, err
	}
	return p, nil
}

package vsphere

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// ErrVMNotFound means no virtual machine matches the name, path or MoRef.
var ErrVMNotFound = errors.New("virtual machine not found")

// ErrNotBackupable means the VM exists but cannot be backed up: it is a
// template or has no virtual disks. Retrying does not help.
var ErrNotBackupable = errors.New("nothing to back up")

// VM is a virtual machine selected for backup.
type VM struct {
	Ref  types.ManagedObjectReference
	Name string
	// Host is the ESXi host the VM runs on (its MoRef value), for per-host
	// limits.
	Host string
	// HardwareVersion such as "vmx-19".
	HardwareVersion string
	// CBTSupported and CBTEnabled describe Changed Block Tracking.
	CBTSupported bool
	CBTEnabled   bool
	Disks        []Disk
	// Snapshots lists every snapshot of the VM (flattened tree).
	Snapshots []SnapshotRef
	// VMPathName is the datastore path of the .vmx file.
	VMPathName string
	// Config is the VM's configuration as read (see VMConfig).
	Config *types.VirtualMachineConfigInfo
	conn   *Conn
}

// Object is the govmomi object of the VM.
func (v *VM) Object() *object.VirtualMachine {
	return object.NewVirtualMachine(v.conn.Client, v.Ref)
}

// SnapshotRef is one snapshot in a VM's tree.
type SnapshotRef struct {
	Ref         types.ManagedObjectReference
	Name        string
	Description string
}

var vmProps = []string{"name", "config", "snapshot", "runtime.host", "capability"}

// FindVM selects a VM by managed object reference ("vm-42" or
// "VirtualMachine:vm-42"), inventory path ("/DC0/vm/web", anything with a
// slash) or name. Templates and VMs without disks are refused.
func (c *Conn) FindVM(ctx context.Context, spec string) (*VM, error) {
	if spec == "" {
		return nil, errors.New("find VM: empty name")
	}
	ref, err := c.resolveVM(ctx, spec)
	if err != nil {
		return nil, err
	}
	vm, err := c.LoadVM(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(vm.Disks) == 0 {
		return nil, fmt.Errorf("VM %s has no virtual disks: %w", vm.Name, ErrNotBackupable)
	}
	return vm, nil
}

func (c *Conn) resolveVM(ctx context.Context, spec string) (types.ManagedObjectReference, error) {
	var ref types.ManagedObjectReference
	if ref.FromString(spec) && ref.Type == "VirtualMachine" {
		return ref, nil
	}
	if strings.HasPrefix(spec, "vm-") && !strings.ContainsAny(spec, "/ ") {
		ref = types.ManagedObjectReference{Type: "VirtualMachine", Value: spec}
		var m mo.VirtualMachine
		if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, ref, []string{"name"}, &m); err == nil {
			return ref, nil
		}
		// not a MoRef after all: fall through to a name lookup
	}
	if strings.Contains(spec, "/") {
		obj, err := find.NewFinder(c.Client, false).VirtualMachine(ctx, spec)
		if err != nil {
			var nf *find.NotFoundError
			if errors.As(err, &nf) {
				return ref, fmt.Errorf("VM %q: %w", spec, ErrVMNotFound)
			}
			return ref, fmt.Errorf("find VM %q: %w", spec, err)
		}
		return obj.Reference(), nil
	}
	m := view.NewManager(c.Client)
	v, err := m.CreateContainerView(ctx, c.Client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return ref, fmt.Errorf("find VM %q: %w", spec, err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var all []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &all); err != nil {
		return ref, fmt.Errorf("find VM %q: %w", spec, err)
	}
	var vms []mo.VirtualMachine
	for _, vm := range all {
		if vm.Name == spec {
			vms = append(vms, vm)
		}
	}
	switch len(vms) {
	case 0:
		return ref, fmt.Errorf("VM %q: %w", spec, ErrVMNotFound)
	case 1:
		return vms[0].Self, nil
	}
	var refs []string
	for _, vm := range vms {
		refs = append(refs, vm.Self.Value)
	}
	return ref, fmt.Errorf("%d VMs are named %q (%s): select one by inventory path or MoRef", len(vms), spec, strings.Join(refs, ", "))
}

// LoadVM reads the VM's configuration, disks and snapshots.
func (c *Conn) LoadVM(ctx context.Context, ref types.ManagedObjectReference) (*VM, error) {
	var m mo.VirtualMachine
	if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, ref, vmProps, &m); err != nil {
		if strings.Contains(err.Error(), "ManagedObjectNotFound") {
			return nil, fmt.Errorf("VM %s: %w", ref.Value, ErrVMNotFound)
		}
		return nil, fmt.Errorf("read VM %s: %w", ref.Value, err)
	}
	if m.Config == nil {
		return nil, fmt.Errorf("VM %s (%s) has no configuration (inaccessible or being created)", m.Name, ref.Value)
	}
	if m.Config.Template {
		return nil, fmt.Errorf("VM %s is a template, not a virtual machine: templates are not backed up: %w", m.Name, ErrNotBackupable)
	}
	vm := &VM{Ref: ref, Name: m.Name, HardwareVersion: m.Config.Version, VMPathName: m.Config.Files.VmPathName, Config: m.Config, conn: c}
	if m.Runtime.Host != nil {
		vm.Host = m.Runtime.Host.Value
	}
	vm.CBTSupported = m.Capability.ChangeTrackingSupported == nil || *m.Capability.ChangeTrackingSupported
	vm.CBTEnabled = m.Config.ChangeTrackingEnabled != nil && *m.Config.ChangeTrackingEnabled
	vm.Disks = DisksOf(m.Config.Hardware.Device)
	if m.Snapshot != nil {
		vm.Snapshots = flattenSnapshots(m.Snapshot.RootSnapshotList, nil)
	}
	return vm, nil
}

func flattenSnapshots(tree []types.VirtualMachineSnapshotTree, out []SnapshotRef) []SnapshotRef {
	for _, s := range tree {
		out = append(out, SnapshotRef{Ref: s.Snapshot, Name: s.Name, Description: s.Description})
		out = flattenSnapshots(s.ChildSnapshotList, out)
	}
	return out
}

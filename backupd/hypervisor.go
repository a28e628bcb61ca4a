package backupd

import (
	"context"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// Hypervisor is what a job asks of the virtualization platform: find a VM
// and its facts, snapshots, changed block tracking, the files kept beside
// a VM, and the proxy VM for HotAdd. The job and the planning code talk to
// it only; NewVSphere adapts a vSphere connection. VMs, snapshots and disks
// are the plain data types of package vsphere (an implementation builds
// them; their methods are the vSphere implementation's own).
//
// It grows with the restore side (create a VM, write a disk, power
// operations) as a separate interface embedding this one, so that a
// backup-only implementation stays small.
type Hypervisor interface {
	// Endpoint names the management server in job records (vCenter host).
	Endpoint() string
	// Server is the server's identity for NBD commands ({server},
	// {thumbprint}); nil when there is none.
	Server() Server
	// FindVM selects a VM by name, inventory path or id and reads its
	// facts (disks, CBT state, configuration); templates and VMs without
	// disks are refused (vsphere.ErrNotBackupable, vsphere.ErrVMNotFound).
	FindVM(ctx context.Context, spec string) (*vsphere.VM, error)
	// EnableCBT switches changed block tracking on where it is off and
	// reports whether it changed anything (vsphere.ErrCBTUnsupported).
	EnableCBT(ctx context.Context, vm *vsphere.VM) (bool, error)
	// CreateSnapshot makes one attempt at a snapshot without memory; a
	// quiesce fault is a *vsphere.QuiesceFaultError (the job's quiesce
	// mode decides what follows: vsphere.SnapshotWithMode). A snapshot
	// made but not read comes back with the error, to be removed.
	CreateSnapshot(ctx context.Context, vm *vsphere.VM, name string, quiesce bool) (*vsphere.Snapshot, error)
	// RemoveSnapshot removes a snapshot; it runs also after ctx of the
	// job ended.
	RemoveSnapshot(vm *vsphere.VM, snap *vsphere.Snapshot) error
	// RemoveStaleSnapshots removes the snapshots an interrupted run left
	// (named vsphere.SnapshotPrefix...) and returns their names.
	RemoveStaleSnapshots(ctx context.Context, vm *vsphere.VM) ([]string, error)
	// ChangedAreas lists the areas of the snapshot's disk changed since
	// the changeId ("*": every allocated area); a changeId the server
	// refuses is a *vsphere.ChangeIDRejectedError.
	ChangedAreas(ctx context.Context, vm *vsphere.VM, snap *vsphere.Snapshot, disk vsphere.Disk, since string) ([]vsphere.Extent, error)
	// DownloadFile reads a file of the VM's datastore (.vmx, .nvram), at
	// most limit bytes.
	DownloadFile(ctx context.Context, vm *vsphere.VM, path string, limit int64) ([]byte, error)
	// VMPlacement reads where the VM lives (datacenter, folder, resource
	// pool, cluster, host, datastore of its files), recorded with each
	// point so that a restore can put the VM back.
	VMPlacement(ctx context.Context, vm *vsphere.VM) (*vmconfig.Placement, error)
	// LocalDatastores maps datastores to local directories (extra on top
	// of what the server tells), for the file transport.
	LocalDatastores(ctx context.Context, extra vsphere.DatastoreDirs) (vsphere.DatastoreDirs, error)
	// FindProxy selects the proxy VM HotAdd attaches disks to.
	FindProxy(ctx context.Context, spec string) (Proxy, error)
}

// Proxy is the appliance's own VM as HotAdd uses it.
type Proxy interface {
	HotAddProxy
	// CleanupStale detaches the disks of vm an interrupted run left
	// attached to the proxy and returns their files.
	CleanupStale(ctx context.Context, vm *vsphere.VM) ([]string, error)
}

// NewVSphere is the Hypervisor of a vSphere connection, with its restore
// side.
func NewVSphere(conn *vsphere.Conn) RestoreHypervisor { return vsphereHypervisor{conn} }

// vsphereHypervisor adapts *vsphere.Conn and its VMs to Hypervisor and
// RestoreHypervisor (hypervisor_restore.go).
type vsphereHypervisor struct{ conn *vsphere.Conn }

func (h vsphereHypervisor) Endpoint() string { return h.conn.URL.Host }
func (h vsphereHypervisor) Server() Server   { return h.conn }

func (h vsphereHypervisor) FindVM(ctx context.Context, spec string) (*vsphere.VM, error) {
	return h.conn.FindVM(ctx, spec)
}

func (h vsphereHypervisor) EnableCBT(ctx context.Context, vm *vsphere.VM) (bool, error) {
	return vm.EnableCBT(ctx)
}

func (h vsphereHypervisor) CreateSnapshot(ctx context.Context, vm *vsphere.VM, name string, quiesce bool) (*vsphere.Snapshot, error) {
	return vm.TakeSnapshot(ctx, name, quiesce)
}

func (h vsphereHypervisor) RemoveSnapshot(vm *vsphere.VM, snap *vsphere.Snapshot) error {
	return vm.RemoveSnapshot(snap.Ref)
}

func (h vsphereHypervisor) RemoveStaleSnapshots(ctx context.Context, vm *vsphere.VM) ([]string, error) {
	return vm.RemoveStaleSnapshots(ctx)
}

func (h vsphereHypervisor) ChangedAreas(ctx context.Context, vm *vsphere.VM, snap *vsphere.Snapshot, disk vsphere.Disk, since string) ([]vsphere.Extent, error) {
	return vm.ChangedAreas(ctx, snap.Ref, disk, since)
}

func (h vsphereHypervisor) VMPlacement(ctx context.Context, vm *vsphere.VM) (*vmconfig.Placement, error) {
	return h.conn.VMPlacement(ctx, vm)
}

func (h vsphereHypervisor) DownloadFile(ctx context.Context, vm *vsphere.VM, path string, limit int64) ([]byte, error) {
	return vm.DownloadFile(ctx, path, limit)
}

func (h vsphereHypervisor) LocalDatastores(ctx context.Context, extra vsphere.DatastoreDirs) (vsphere.DatastoreDirs, error) {
	return h.conn.LocalDatastores(ctx, extra)
}

func (h vsphereHypervisor) FindProxy(ctx context.Context, spec string) (Proxy, error) {
	p, err := h.conn.FindProxy(ctx, spec)
	if err != nil {
		return nil, err
	}
	return p, nil
}

package vsphere

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// NFSDatastore is an NFS datastore mounted for instant recovery.
type NFSDatastore struct {
	Name string
	Ref  types.ManagedObjectReference
	// Host is the ESXi host it is mounted on (name and reference).
	Host    string
	HostRef types.ManagedObjectReference
}

// ErrNFSMount means the ESXi host could not mount the NFS export.
var ErrNFSMount = errors.New("the ESXi host could not mount the NFS export")

// InstantHost picks the ESXi host an instant recovery runs on: the
// placement rules of CreateVM (spec's Host, Cluster or ResourcePool, else
// the recorded one, else the first host).
func (c *Conn) InstantHost(ctx context.Context, spec CreateSpec) (string, error) {
	p, err := c.place(ctx, spec)
	if err != nil {
		return "", err
	}
	return p.host.Name(), nil
}

// MountNFS mounts remoteHost:remotePath as the NFSv3 datastore name on
// the ESXi host (HostDatastoreSystem.CreateNasDatastore, read-write). A
// refusal of the host wraps ErrNFSMount.
func (c *Conn) MountNFS(ctx context.Context, host, name, remoteHost, remotePath string) (*NFSDatastore, error) {
	finder := find.NewFinder(c.Client, false)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return nil, fmt.Errorf("datacenter: %w", err)
	}
	finder.SetDatacenter(dc)
	h, err := finder.HostSystem(ctx, host)
	if err != nil {
		return nil, &PlacementError{Field: "host", Value: host, Reason: "not found in " + dc.Name(), Err: err}
	}
	dss, err := h.ConfigManager().DatastoreSystem(ctx)
	if err != nil {
		return nil, fmt.Errorf("datastore system of %s: %w", host, err)
	}
	ds, err := dss.CreateNasDatastore(ctx, types.HostNasVolumeSpec{
		RemoteHost: remoteHost, RemotePath: remotePath, LocalPath: name,
		AccessMode: string(types.HostMountModeReadWrite), Type: string(types.HostFileSystemVolumeFileSystemTypeNFS),
	})
	if err != nil {
		return nil, fmt.Errorf("mount NFS datastore %s (%s:%s) on %s: %w: %w", name, remoteHost, remotePath, host, ErrNFSMount, err)
	}
	return &NFSDatastore{Name: name, Ref: ds.Reference(), Host: host, HostRef: h.Reference()}, nil
}

// UnmountNFS removes an NFS datastore from its host
// (HostDatastoreSystem.RemoveDatastore); vSphere refuses while a VM uses
// it.
func (c *Conn) UnmountNFS(ctx context.Context, ds *NFSDatastore) error {
	h := object.NewHostSystem(c.Client, ds.HostRef)
	dss, err := h.ConfigManager().DatastoreSystem(ctx)
	if err == nil {
		err = dss.Remove(ctx, object.NewDatastore(c.Client, ds.Ref))
	}
	if err != nil {
		return fmt.Errorf("remove NFS datastore %s from %s: %w", ds.Name, ds.Host, err)
	}
	return nil
}

// FindNFSDatastores lists the NFS datastores whose name starts with
// prefix, with the host each is mounted on (for cleanup).
func (c *Conn) FindNFSDatastores(ctx context.Context, prefix string) ([]NFSDatastore, error) {
	finder := find.NewFinder(c.Client, false)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return nil, fmt.Errorf("datacenter: %w", err)
	}
	finder.SetDatacenter(dc)
	list, err := finder.DatastoreList(ctx, prefix+"*")
	if err != nil {
		var nf *find.NotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, err
	}
	var out []NFSDatastore
	pc := property.DefaultCollector(c.Client)
	for _, ds := range list {
		var m mo.Datastore
		if err := pc.RetrieveOne(ctx, ds.Reference(), []string{"name", "summary.type", "host"}, &m); err != nil {
			return nil, err
		}
		if m.Summary.Type != string(types.HostFileSystemVolumeFileSystemTypeNFS) {
			continue
		}
		for _, hm := range m.Host {
			var hs mo.HostSystem
			if err := pc.RetrieveOne(ctx, hm.Key, []string{"name"}, &hs); err != nil {
				return nil, err
			}
			out = append(out, NFSDatastore{Name: m.Name, Ref: ds.Reference(), Host: hs.Name, HostRef: hm.Key})
		}
	}
	return out, nil
}

// CreateVMOnDisks creates a powered-off VM from spec.Config (as CreateVM:
// firmware, CPUs, memory, controllers, NICs, CD-ROMs) whose disks are
// existing VMDK files: files maps each recorded disk's name to its
// datastore path ("[cairn-vm-p] disk0.vmdk"). spec.Datastore holds the
// VM's own files; spec.Host must be given. The VM carries the restore
// marker until FinishRestore; on an error nothing is left.
func (c *Conn) CreateVMOnDisks(ctx context.Context, spec CreateSpec, files map[string]string) (*CreatedVM, error) {
	b, err := c.buildVM(ctx, spec)
	if err != nil {
		return nil, err
	}
	name, p := b.name, b.p
	for i, d := range b.cfg.Disks {
		f, ok := files[d.Name]
		if !ok {
			return nil, fmt.Errorf("create VM %s: no file for disk %s", name, d.Name)
		}
		ckey, ok := b.ctrlKeys[d.ControllerKey]
		if !ok {
			return nil, fmt.Errorf("disk %s: its controller (key %d) is not in the configuration", d.Name, d.ControllerKey)
		}
		dsRef := p.ds.Reference()
		unit := d.Unit
		b.cs.DeviceChange = append(b.cs.DeviceChange, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd,
			Device: &types.VirtualDisk{
				VirtualDevice: types.VirtualDevice{
					Key: int32(-1000 - i), ControllerKey: ckey, UnitNumber: &unit,
					DeviceInfo: &types.Description{Label: d.Label},
					Backing: &types.VirtualDiskFlatVer2BackingInfo{
						VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: f, Datastore: &dsRef},
						DiskMode:                     string(types.VirtualDiskModePersistent),
						ThinProvisioned:              types.NewBool(true),
					},
				},
				CapacityInBytes: d.Capacity, CapacityInKB: d.Capacity / 1024,
			},
		})
	}
	return c.createThen(ctx, b, func(ref types.ManagedObjectReference) (*CreatedVM, error) {
		return c.createdVM(ctx, ref, b)
	})
}

// RelocateVM moves a (running) VM's files and disks to the datastore
// (RelocateVM_Task: Storage vMotion when the VM runs).
func (c *Conn) RelocateVM(ctx context.Context, ref types.ManagedObjectReference, datastore string) error {
	finder := find.NewFinder(c.Client, false)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return fmt.Errorf("datacenter: %w", err)
	}
	finder.SetDatacenter(dc)
	ds, err := finder.Datastore(ctx, datastore)
	if err != nil {
		return &PlacementError{Field: "datastore", Value: datastore, Reason: "not found in " + dc.Name(), Err: err}
	}
	dsRef := ds.Reference()
	t, err := object.NewVirtualMachine(c.Client, ref).Relocate(ctx, types.VirtualMachineRelocateSpec{Datastore: &dsRef}, types.VirtualMachineMovePriorityDefaultPriority)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("move VM %s to datastore %s: %w", ref.Value, datastore, err)
	}
	return nil
}

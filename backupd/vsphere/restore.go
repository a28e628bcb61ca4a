package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// ErrVMExists means a VM of the requested name exists already.
var ErrVMExists = errors.New("a VM of that name exists")

// ErrNetworkNotFound means a NIC's network (after the request's network
// map) does not exist in the datacenter: the CLI and the API say how to
// map it to another. It is matched by every *NetworkError.
var ErrNetworkNotFound = errors.New("network not found")

// NetworkError names the NIC whose network is missing: Network is the one
// looked up, Recorded the one the point's configuration names (they differ
// when the request mapped it).
type NetworkError struct {
	NIC, Network, Recorded string
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("NIC %s: network %q not found", e.NIC, e.Network)
}

// Is makes a *NetworkError match ErrNetworkNotFound.
func (e *NetworkError) Is(target error) bool { return target == ErrNetworkNotFound }

// ErrNoFreeUnit means the VM has no disk controller (or not the one asked
// for) with a free unit for another disk.
var ErrNoFreeUnit = errors.New("no disk controller with a free unit")

// ErrPlacement means a new VM cannot go where it was asked to (an unknown
// host, cluster, datastore or folder; a host and a cluster both given).
// Retrying through another write transport cannot help. It is matched
// by every *PlacementError.
var ErrPlacement = errors.New("cannot place the new VM")

// PlacementError says which part of a CreateSpec's placement is wrong.
// Field is the CreateSpec field in lower case ("host", "cluster",
// "datastore", "folder"), Value what was asked; the CLI and the API name
// their own flag or field from it.
type PlacementError struct {
	Field, Value string
	// Reason says what is wrong with Value, after it in the message.
	Reason string
	Err    error
}

func (e *PlacementError) Error() string {
	msg := fmt.Sprintf("%s: %s %q %s", ErrPlacement, e.Field, e.Value, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes every PlacementError match ErrPlacement.
func (e *PlacementError) Is(target error) bool { return target == ErrPlacement }

func (e *PlacementError) Unwrap() error { return e.Err }

// ErrHostAndCluster is the PlacementError of a CreateSpec that names both
// a host and a cluster.
func ErrHostAndCluster(host, cluster string) error {
	return &PlacementError{Field: "host", Value: host, Reason: fmt.Sprintf("and cluster %q both given: a VM goes to a host or a cluster", cluster)}
}

// CheckPlacement refuses what a placement can never satisfy, before any
// connection: a host and a cluster both given, a resource pool and a
// cluster both given (the pool names its cluster).
func (s CreateSpec) CheckPlacement() error {
	if s.Host != "" && s.Cluster != "" {
		return ErrHostAndCluster(s.Host, s.Cluster)
	}
	if s.ResourcePool != "" && s.Cluster != "" {
		return &PlacementError{Field: "resource_pool", Value: s.ResourcePool, Reason: fmt.Sprintf("and cluster %q both given: a resource pool belongs to one cluster or host already", s.Cluster)}
	}
	return nil
}

// RestoreMarkerKey is the extraConfig key cairn sets on a VM it is
// creating for a restore: "<job id> <host name> <pid> <RFC 3339 start>".
// It is removed when the restore finished; a VM still carrying it was left
// by a restore that died (see IncompleteRestores).
const RestoreMarkerKey = "cairn.restore.incomplete"

// annotationMarker starts the annotation line that tells an administrator
// in the vSphere client what the VM is while it is being restored.
const annotationMarker = "cairn: restore in progress, job "

// CreateSpec says where and how to create a VM from a recorded
// configuration.
type CreateSpec struct {
	Config *vmconfig.Config
	// Name of the new VM (default Config.Name).
	Name string
	// Host (name) or Cluster (name) to place the VM on; default: the
	// first host of the datacenter.
	Host    string
	Cluster string
	// ResourcePool is an inventory path ("/DC0/host/C1/Resources/web") or
	// a path below the datacenter's host folder ("C1/Resources/web"); with
	// Host, the host must belong to the pool's cluster or host; not with
	// Cluster. Default: the recorded one (see Config.Placement), else the
	// root pool of the host or cluster.
	ResourcePool string
	// Datastore for the VM's files and disks (default: the first
	// datastore of the host).
	Datastore string
	// Folder is an inventory path ("/DC0/vm/restored") or a path below the
	// datacenter's VM folder ("restored"); default the VM folder.
	Folder string
	// Networks maps recorded network names to new ones; a recorded network
	// without an entry is used as it is.
	Networks map[string]string
	// Provisioning overrides every disk's provisioning ("thin", "thick",
	// "eager"); "" keeps the recorded one.
	Provisioning string
	// KeepIdentity keeps the BIOS and instance UUIDs and the MAC addresses;
	// otherwise vSphere generates new ones.
	KeepIdentity bool
	// JobID names the restore in the VM's marker.
	JobID string
}

// CreatedDisk maps a recorded disk to the disk created for it.
type CreatedDisk struct {
	// Name is the disk's name in the point ("scsi0-0").
	Name string
	Disk Disk
}

// CreatedVM is a VM made by CreateVM.
type CreatedVM struct {
	*VM
	Datastore string
	Disks     []CreatedDisk
	// Placed says where the VM went and which recorded items were not
	// found.
	Placed Placed
}

// LookupVM finds a VM by name, inventory path or MoRef, templates and
// VMs without disks included; ErrVMNotFound when there is none.
func (c *Conn) LookupVM(ctx context.Context, spec string) (types.ManagedObjectReference, error) {
	return c.resolveVM(ctx, spec)
}

// placement is where a new VM goes.
type placement struct {
	dc      *object.Datacenter
	folder  *object.Folder
	pool    *object.ResourcePool
	host    *object.HostSystem
	cluster string
	// ds holds the VM's files; diskDS the disks placed elsewhere.
	ds     *object.Datastore
	diskDS map[string]*object.Datastore
	placed Placed
}

// place decides where a new VM goes. Each of spec's Folder, Host or
// Cluster, and Datastore decides its part; a part not given follows the
// configuration's recorded Placement (and each disk's recorded datastore)
// where that still exists, else today's default (the datacenter's VM
// folder, its first host and that host's first datastore), with a line in
// Placed.Fallbacks for each recorded item not found.
func (c *Conn) place(ctx context.Context, spec CreateSpec) (*placement, error) {
	finder := find.NewFinder(c.Client, false)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return nil, fmt.Errorf("datacenter: %w (several datacenters are not supported yet)", err)
	}
	finder.SetDatacenter(dc)
	var rec *vmconfig.Placement
	if spec.Config != nil {
		rec = spec.Config.Placement
	}
	p := &placement{dc: dc}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, fmt.Errorf("folders of %s: %w", dc.Name(), err)
	}
	p.folder = folders.VmFolder
	if spec.Folder != "" {
		fp := spec.Folder
		if !strings.HasPrefix(fp, "/") {
			fp = path.Join(folders.VmFolder.InventoryPath, fp)
		}
		if p.folder, err = finder.Folder(ctx, fp); err != nil {
			return nil, &PlacementError{Field: "folder", Value: spec.Folder, Reason: "not found in " + dc.Name(), Err: err}
		}
	} else {
		c.recordedFolder(ctx, finder, p, rec)
	}
	if err := spec.CheckPlacement(); err != nil {
		return nil, err
	}
	switch {
	case spec.ResourcePool != "":
		if err := c.givenPool(ctx, finder, p, spec, rec); err != nil {
			return nil, err
		}
	case spec.Cluster != "":
		cl, err := finder.ClusterComputeResource(ctx, spec.Cluster)
		if err != nil {
			return nil, &PlacementError{Field: "cluster", Value: spec.Cluster, Reason: "not found in " + dc.Name(), Err: err}
		}
		if p.pool, err = cl.ResourcePool(ctx); err != nil {
			return nil, fmt.Errorf("resource pool of cluster %q: %w", spec.Cluster, err)
		}
		if p.host = c.hostIn(ctx, finder, recHost(rec), cl.Reference()); p.host == nil {
			hosts, err := cl.Hosts(ctx)
			if err != nil || len(hosts) == 0 {
				return nil, &PlacementError{Field: "cluster", Value: spec.Cluster, Reason: "has no hosts", Err: err}
			}
			p.host = hosts[0]
		}
		c.keepRecordedPool(ctx, finder, p, rec)
	case spec.Host != "":
		hosts, err := finder.HostSystemList(ctx, spec.Host)
		if err != nil || len(hosts) == 0 {
			return nil, &PlacementError{Field: "host", Value: spec.Host, Reason: "is no ESXi host of " + dc.Name()}
		}
		p.host = hosts[0]
		if p.pool, err = p.host.ResourcePool(ctx); err != nil {
			return nil, fmt.Errorf("resource pool of host %s: %w", p.host.Name(), err)
		}
		c.keepRecordedPool(ctx, finder, p, rec)
	default:
		ok, err := c.recordedCompute(ctx, finder, p, rec)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		hosts, err := finder.HostSystemList(ctx, "*")
		if err != nil || len(hosts) == 0 {
			return nil, &PlacementError{Field: "host", Value: "", Reason: "is no ESXi host of " + dc.Name()}
		}
		p.host = hosts[0]
		if p.pool, err = p.host.ResourcePool(ctx); err != nil {
			return nil, fmt.Errorf("resource pool of host %s: %w", p.host.Name(), err)
		}
		if rec != nil && rec.Host != "" {
			p.fallback("recorded host %s not found in %s: the VM goes to host %s", rec.Host, dc.Name(), p.host.Name())
		}
	}
	if err := c.datastores(ctx, finder, p, spec); err != nil {
		return nil, err
	}
	cfg := spec.Config
	if cfg == nil {
		cfg = &vmconfig.Config{}
	}
	c.finishPlaced(ctx, p, cfg)
	return p, nil
}

func recHost(rec *vmconfig.Placement) string {
	if rec == nil {
		return ""
	}
	return rec.Host
}

// marker is the RestoreMarkerKey value of a restore job run here.
func marker(job string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s %s %d %s", job, host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
}

// CreateVM creates a powered-off VM from spec.Config: firmware, CPUs,
// memory, controllers, NICs (networks mapped), CD-ROMs (disconnected,
// without media) and empty disks of the recorded capacities. The VM
// carries RestoreMarkerKey until FinishRestore; on an error the partly
// created VM is destroyed before CreateVM returns.
func (c *Conn) CreateVM(ctx context.Context, spec CreateSpec) (*CreatedVM, error) {
	b, err := c.buildVM(ctx, spec)
	if err != nil {
		return nil, err
	}
	name, p := b.name, b.p
	return c.createThen(ctx, b, func(ref types.ManagedObjectReference) (*CreatedVM, error) {
		// Disks in a second step, named as ESXi names them (NAME.vmdk,
		// NAME_1.vmdk, ...) in the VM's directory.
		var disks types.VirtualMachineConfigSpec
		var err error
		if disks.DeviceChange, err = b.diskChanges(); err != nil {
			return nil, err
		}
		if err := c.makeDiskDirs(ctx, p, name); err != nil {
			return nil, err
		}
		obj := object.NewVirtualMachine(c.Client, ref)
		if len(disks.DeviceChange) > 0 {
			t, err := obj.Reconfigure(ctx, disks)
			if err != nil {
				return nil, fmt.Errorf("create the disks of %s: %w", name, err)
			}
			if err := t.Wait(ctx); err != nil {
				return nil, fmt.Errorf("create the disks of %s: %w", name, err)
			}
		}
		return c.createdVM(ctx, ref, b)
	})
}

// createThen creates the VM b describes, then runs then on it; when
// either fails, the half-created VM is destroyed before createThen
// returns (CreateVM, CreateVMOnDisks).
func (c *Conn) createThen(ctx context.Context, b *builtVM, then func(types.ManagedObjectReference) (*CreatedVM, error)) (_ *CreatedVM, err error) {
	task, err := b.p.folder.CreateVM(ctx, b.cs, b.p.pool, b.p.host)
	if err != nil {
		return nil, fmt.Errorf("create VM %s: %w", b.name, err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return nil, fmt.Errorf("create VM %s: %w", b.name, err)
	}
	ref := info.Result.(types.ManagedObjectReference)
	defer func() {
		if err != nil {
			if derr := c.DestroyVM(context.WithoutCancel(ctx), ref); derr != nil {
				err = fmt.Errorf("%w (and removing the half-created VM %s failed: %v)", err, b.name, derr)
			}
		}
	}()
	return then(ref)
}

// createdVM loads a VM made from b and maps its disks to the recorded ones.
func (c *Conn) createdVM(ctx context.Context, ref types.ManagedObjectReference, b *builtVM) (*CreatedVM, error) {
	cfg, name, dsName := b.cfg, b.name, b.dsName
	vm, err := c.loadAny(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := &CreatedVM{VM: vm, Datastore: dsName, Placed: b.p.placed}
	// The new disks in recorded order: match by controller bus and unit.
	newByPos := map[string]Disk{}
	for _, d := range vm.Disks {
		newByPos[diskPos(d.Name)] = d
	}
	for _, d := range cfg.Disks {
		nd, ok := newByPos[diskPos(d.Name)]
		if !ok {
			return nil, fmt.Errorf("disk %s was not created on %s", d.Name, name)
		}
		if nd.Capacity < d.Capacity {
			return nil, fmt.Errorf("disk %s of %s has %d bytes, want %d", nd.Name, name, nd.Capacity, d.Capacity)
		}
		out.Disks = append(out.Disks, CreatedDisk{Name: d.Name, Disk: nd})
	}
	return out, nil
}

// builtVM is the configuration of a VM to create.
type builtVM struct {
	spec     CreateSpec
	cfg      *vmconfig.Config
	name     string
	p        *placement
	cs       types.VirtualMachineConfigSpec
	dsName   string
	ctrlKeys map[int32]int32
}

func (c *Conn) buildVM(ctx context.Context, spec CreateSpec) (*builtVM, error) {
	cfg := spec.Config
	if cfg == nil {
		return nil, errors.New("create VM: no configuration")
	}
	name := spec.Name
	if name == "" {
		name = cfg.Name
	}
	if name == "" {
		return nil, errors.New("create VM: no name")
	}
	if _, err := c.resolveVM(ctx, name); err == nil {
		return nil, fmt.Errorf("VM %q: %w", name, ErrVMExists)
	} else if !errors.Is(err, ErrVMNotFound) {
		return nil, err
	}
	p, err := c.place(ctx, spec)
	if err != nil {
		return nil, err
	}
	dsName := p.ds.InventoryPath
	cs := types.VirtualMachineConfigSpec{
		Name: name, GuestId: cfg.GuestID, Version: cfg.HardwareVersion,
		NumCPUs: int32(cfg.CPUs), NumCoresPerSocket: int32(cfg.CoresPerSocket), MemoryMB: cfg.MemoryMB,
		Files:      &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", dsName)},
		Annotation: strings.TrimSpace(annotationMarker + spec.JobID + "\n" + cfg.Annotation),
	}
	if cs.GuestId == "" {
		cs.GuestId = string(types.VirtualMachineGuestOsIdentifierOtherGuest64)
	}
	switch cfg.Firmware {
	case vmconfig.FirmwareEFI:
		cs.Firmware = string(types.GuestOsDescriptorFirmwareTypeEfi)
		cs.BootOptions = &types.VirtualMachineBootOptions{EfiSecureBootEnabled: types.NewBool(cfg.SecureBoot)}
	default:
		cs.Firmware = string(types.GuestOsDescriptorFirmwareTypeBios)
	}
	if spec.KeepIdentity {
		cs.Uuid, cs.InstanceUuid = cfg.BIOSUUID, cfg.InstanceUUID
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.ExtraConfig)) {
		if k == "nvram" || strings.HasPrefix(k, "cairn.") {
			continue
		}
		cs.ExtraConfig = append(cs.ExtraConfig, &types.OptionValue{Key: k, Value: cfg.ExtraConfig[k]})
	}
	cs.ExtraConfig = append(cs.ExtraConfig, &types.OptionValue{Key: RestoreMarkerKey, Value: marker(spec.JobID)})

	add := func(d types.BaseVirtualDevice, op types.VirtualDeviceConfigSpecFileOperation) {
		cs.DeviceChange = append(cs.DeviceChange, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd, FileOperation: op, Device: d,
		})
	}
	ctrlKeys := map[int32]int32{} // recorded key -> key in the new VM
	for _, ct := range cfg.Controllers {
		if ct.Type == vmconfig.ControllerIDE {
			ctrlKeys[ct.Key] = 200 + ct.Bus // every VM has IDE 0 and 1 (keys 200, 201)
			continue
		}
		dev, err := controllerDevice(ct)
		if err != nil {
			return nil, err
		}
		ctrlKeys[ct.Key] = ct.Key
		add(dev, "")
	}
	for i, n := range cfg.NICs {
		dev, err := c.nicDevice(ctx, p, n, int32(-100-i), spec)
		if err != nil {
			return nil, err
		}
		add(dev, "")
	}
	for _, cd := range cfg.CDROMs {
		key, ok := ctrlKeys[cd.ControllerKey]
		if !ok {
			continue // a CD-ROM on a controller we did not recreate
		}
		unit := cd.Unit
		add(&types.VirtualCdrom{VirtualDevice: types.VirtualDevice{
			Key: cd.Key, ControllerKey: key, UnitNumber: &unit,
			Backing:     &types.VirtualCdromRemotePassthroughBackingInfo{VirtualDeviceRemoteDeviceBackingInfo: types.VirtualDeviceRemoteDeviceBackingInfo{}},
			Connectable: &types.VirtualDeviceConnectInfo{AllowGuestControl: true},
		}}, "")
	}
	return &builtVM{spec: spec, cfg: cfg, name: name, p: p, cs: cs, dsName: dsName, ctrlKeys: ctrlKeys}, nil
}

// diskChanges are the device changes that create the VM's disks.
func (b *builtVM) diskChanges() ([]types.BaseVirtualDeviceConfigSpec, error) {
	var out []types.BaseVirtualDeviceConfigSpec
	cfg, name, ctrlKeys, spec := b.cfg, b.name, b.ctrlKeys, b.spec
	for i, d := range cfg.Disks {
		ds := b.p.diskDatastore(d.Name)
		dsName, dsRef := ds.InventoryPath, ds.Reference()
		ckey, ok := ctrlKeys[d.ControllerKey]
		if !ok {
			return nil, fmt.Errorf("disk %s: its controller (key %d) is not in the configuration", d.Name, d.ControllerKey)
		}
		base := name
		if i > 0 {
			base = fmt.Sprintf("%s_%d", name, i)
		}
		prov := d.Provisioning
		if spec.Provisioning != "" {
			prov = spec.Provisioning
		}
		unit := d.Unit
		out = append(out, &types.VirtualDeviceConfigSpec{
			Operation:     types.VirtualDeviceConfigSpecOperationAdd,
			FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate,
			Device: &types.VirtualDisk{
				VirtualDevice: types.VirtualDevice{
					Key: int32(-1000 - i), ControllerKey: ckey, UnitNumber: &unit,
					DeviceInfo: &types.Description{Label: d.Label},
					Backing: &types.VirtualDiskFlatVer2BackingInfo{
						VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
							FileName: fmt.Sprintf("[%s] %s/%s.vmdk", dsName, name, base), Datastore: &dsRef,
						},
						DiskMode:        orDefault(d.Mode, string(types.VirtualDiskModePersistent)),
						ThinProvisioned: types.NewBool(prov == vmconfig.ProvisioningThin),
						EagerlyScrub:    types.NewBool(prov == vmconfig.ProvisioningEager),
					},
				},
				CapacityInBytes: d.Capacity, CapacityInKB: d.Capacity / 1024,
			},
		})
	}
	return out, nil
}

// diskPos is a disk name without anything that could differ between the
// recorded and the new VM: it is the name itself ("scsi0-1").
func diskPos(name string) string { return name }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// loadAny is LoadVM without the refusal of templates and disk-less VMs.
func (c *Conn) loadAny(ctx context.Context, ref types.ManagedObjectReference) (*VM, error) {
	return c.LoadVM(ctx, ref)
}

func controllerDevice(ct vmconfig.Controller) (types.BaseVirtualDevice, error) {
	vc := types.VirtualController{BusNumber: ct.Bus, VirtualDevice: types.VirtualDevice{Key: ct.Key}}
	scsi := types.VirtualSCSIController{SharedBus: types.VirtualSCSISharingNoSharing, VirtualController: vc}
	switch ct.Type {
	case vmconfig.ControllerPVSCSI:
		return &types.ParaVirtualSCSIController{VirtualSCSIController: scsi}, nil
	case vmconfig.ControllerLSILogic:
		return &types.VirtualLsiLogicController{VirtualSCSIController: scsi}, nil
	case vmconfig.ControllerLSILogicSAS:
		return &types.VirtualLsiLogicSASController{VirtualSCSIController: scsi}, nil
	case vmconfig.ControllerBusLogic:
		return &types.VirtualBusLogicController{VirtualSCSIController: scsi}, nil
	case vmconfig.ControllerAHCI:
		return &types.VirtualAHCIController{VirtualSATAController: types.VirtualSATAController{VirtualController: vc}}, nil
	case vmconfig.ControllerNVMe:
		return &types.VirtualNVMEController{VirtualController: vc}, nil
	}
	return nil, fmt.Errorf("controller type %q cannot be created", ct.Type)
}

// nicDevice builds a NIC on the (mapped) network.
func (c *Conn) nicDevice(ctx context.Context, p *placement, n vmconfig.NIC, key int32, spec CreateSpec) (types.BaseVirtualDevice, error) {
	netName := n.Network
	if m, ok := spec.Networks[netName]; ok {
		netName = m
	}
	finder := find.NewFinder(c.Client, false)
	finder.SetDatacenter(p.dc)
	net, err := c.findNetwork(ctx, finder, netName)
	if err != nil {
		return nil, &NetworkError{NIC: orDefault(n.Label, strconv.Itoa(int(n.Key))), Network: netName, Recorded: n.Network}
	}
	backing, err := net.EthernetCardBackingInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("NIC %s: network %q: %w", n.Label, netName, err)
	}
	card := types.VirtualEthernetCard{
		VirtualDevice: types.VirtualDevice{
			Key: key, Backing: backing,
			Connectable: &types.VirtualDeviceConnectInfo{StartConnected: n.Connected, AllowGuestControl: true},
		},
		AddressType: string(types.VirtualEthernetCardMacTypeGenerated),
	}
	if spec.KeepIdentity && n.MAC != "" {
		card.AddressType, card.MacAddress = string(types.VirtualEthernetCardMacTypeManual), n.MAC
	}
	switch n.AdapterType {
	case "e1000":
		return &types.VirtualE1000{VirtualEthernetCard: card}, nil
	case "e1000e":
		return &types.VirtualE1000e{VirtualEthernetCard: card}, nil
	case "vmxnet2":
		return &types.VirtualVmxnet2{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: card}}, nil
	case "pcnet32":
		return &types.VirtualPCNet32{VirtualEthernetCard: card}, nil
	}
	return &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: card}}, nil
}

// FinishRestore removes the restore marker (extraConfig and annotation
// line) from a VM made by CreateVM.
func (c *Conn) FinishRestore(ctx context.Context, ref types.ManagedObjectReference, annotation string) error {
	spec := types.VirtualMachineConfigSpec{
		Annotation:  annotation,
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: RestoreMarkerKey, Value: ""}},
	}
	t, err := object.NewVirtualMachine(c.Client, ref).Reconfigure(ctx, spec)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("clear the restore marker of %s: %w", ref.Value, err)
	}
	return nil
}

// PowerOff powers a VM off (hard), doing nothing when it is off.
func (c *Conn) PowerOff(ctx context.Context, ref types.ManagedObjectReference) error {
	obj := object.NewVirtualMachine(c.Client, ref)
	st, err := obj.PowerState(ctx)
	if err != nil {
		return fmt.Errorf("power state of %s: %w", ref.Value, err)
	}
	if st != types.VirtualMachinePowerStatePoweredOn {
		return nil
	}
	t, err := obj.PowerOff(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("power off %s: %w", ref.Value, err)
	}
	return nil
}

// PowerOn powers a VM on.
func (c *Conn) PowerOn(ctx context.Context, ref types.ManagedObjectReference) error {
	t, err := object.NewVirtualMachine(c.Client, ref).PowerOn(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("power on %s: %w", ref.Value, err)
	}
	return nil
}

// PoweredOff reports whether the VM is powered off.
func (c *Conn) PoweredOff(ctx context.Context, ref types.ManagedObjectReference) (bool, error) {
	st, err := object.NewVirtualMachine(c.Client, ref).PowerState(ctx)
	if err != nil {
		return false, fmt.Errorf("power state of %s: %w", ref.Value, err)
	}
	return st == types.VirtualMachinePowerStatePoweredOff, nil
}

// DestroyVM powers a VM off and deletes it with its files.
func (c *Conn) DestroyVM(ctx context.Context, ref types.ManagedObjectReference) error {
	if err := c.PowerOff(ctx, ref); err != nil {
		return err
	}
	t, err := object.NewVirtualMachine(c.Client, ref).Destroy(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("destroy VM %s: %w", ref.Value, err)
	}
	return nil
}

// RenameVM renames a VM.
func (c *Conn) RenameVM(ctx context.Context, ref types.ManagedObjectReference, name string) error {
	t, err := object.NewVirtualMachine(c.Client, ref).Rename(ctx, name)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("rename VM %s to %q: %w", ref.Value, name, err)
	}
	return nil
}

// IncompleteRestore is a VM still carrying RestoreMarkerKey.
type IncompleteRestore struct {
	Ref  types.ManagedObjectReference
	Name string
	// VMXPath is the datastore path of its .vmx ("[ds] name/name.vmx").
	VMXPath string
	// Job, Host, PID and Started are parsed from the marker.
	Job     string
	Host    string
	PID     int
	Started time.Time
}

// IncompleteRestores lists the VMs left by restores that did not finish.
func (c *Conn) IncompleteRestores(ctx context.Context) ([]IncompleteRestore, error) {
	m := view.NewManager(c.Client)
	v, err := m.CreateContainerView(ctx, c.Client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var all []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.extraConfig", "config.files"}, &all); err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	var out []IncompleteRestore
	for _, vm := range all {
		if vm.Config == nil {
			continue
		}
		for _, o := range vm.Config.ExtraConfig {
			ov := o.GetOptionValue()
			val, _ := ov.Value.(string)
			if ov.Key != RestoreMarkerKey || val == "" {
				continue
			}
			ir := IncompleteRestore{Ref: vm.Self, Name: vm.Name, VMXPath: vm.Config.Files.VmPathName}
			f := strings.Fields(val)
			if len(f) == 4 {
				ir.Job, ir.Host = f[0], f[1]
				ir.PID, _ = strconv.Atoi(f[2])
				ir.Started, _ = time.Parse(time.RFC3339, f[3])
			}
			out = append(out, ir)
		}
	}
	return out, nil
}

// AddDiskSpec describes a disk to add to an existing VM.
type AddDiskSpec struct {
	// Controller is the controller to attach to, as disks name it
	// ("scsi0", "sata0", "nvme0"); "" picks the first SCSI, SATA or NVMe
	// controller with a free unit.
	Controller string
	Capacity   int64
	// Provisioning is thin (default), thick or eager.
	Provisioning string
	// FileBase names the disk file in the VM's directory
	// ("<FileBase>.vmdk"); a number is added when it exists.
	FileBase string
	Label    string
}

// AddDisk creates a new empty disk on a VM and returns it.
func (c *Conn) AddDisk(ctx context.Context, ref types.ManagedObjectReference, spec AddDiskSpec) (Disk, error) {
	vm, err := c.LoadVM(ctx, ref)
	if err != nil {
		return Disk{}, err
	}
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	used := map[string]bool{}
	for _, d := range DisksOf(devices) {
		used[d.Name] = true
	}
	var ctrlKey, unit int32 = 0, -1
	var ctrlName string
	for _, d := range devices {
		var prefix string
		var bus, maxUnit int32
		switch x := d.(type) {
		case types.BaseVirtualSCSIController:
			prefix, bus, maxUnit = "scsi", x.GetVirtualSCSIController().BusNumber, 16
		case types.BaseVirtualSATAController:
			prefix, bus, maxUnit = "sata", x.GetVirtualSATAController().BusNumber, 30
		case *types.VirtualNVMEController:
			prefix, bus, maxUnit = "nvme", x.BusNumber, 15
		default:
			continue
		}
		name := fmt.Sprintf("%s%d", prefix, bus)
		if spec.Controller != "" && spec.Controller != name {
			continue
		}
		for u := int32(0); u < maxUnit; u++ {
			if prefix == "scsi" && u == 7 {
				continue
			}
			if !used[fmt.Sprintf("%s-%d", name, u)] && !unitTaken(devices, d.GetVirtualDevice().Key, u) {
				ctrlKey, unit, ctrlName = d.GetVirtualDevice().Key, u, name
				break
			}
		}
		if unit >= 0 {
			break
		}
	}
	if unit < 0 {
		if spec.Controller != "" {
			return Disk{}, fmt.Errorf("VM %s, controller %s: %w", vm.Name, spec.Controller, ErrNoFreeUnit)
		}
		return Disk{}, fmt.Errorf("VM %s: %w", vm.Name, ErrNoFreeUnit)
	}
	var p object.DatastorePath
	if !p.FromString(vm.VMPathName) {
		return Disk{}, fmt.Errorf("VM %s: cannot parse its path %q", vm.Name, vm.VMPathName)
	}
	base := orDefault(spec.FileBase, "restored")
	fileName := fmt.Sprintf("[%s] %s/%s.vmdk", p.Datastore, path.Dir(p.Path), base)
	for i := 1; fileTaken(devices, fileName); i++ {
		fileName = fmt.Sprintf("[%s] %s/%s_%d.vmdk", p.Datastore, path.Dir(p.Path), base, i)
	}
	u := unit
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key: -1, ControllerKey: ctrlKey, UnitNumber: &u,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: fileName},
				DiskMode:                     string(types.VirtualDiskModePersistent),
				ThinProvisioned:              types.NewBool(spec.Provisioning == "" || spec.Provisioning == vmconfig.ProvisioningThin),
				EagerlyScrub:                 types.NewBool(spec.Provisioning == vmconfig.ProvisioningEager),
			},
		},
		CapacityInBytes: spec.Capacity, CapacityInKB: spec.Capacity / 1024,
	}
	if spec.Label != "" {
		disk.DeviceInfo = &types.Description{Label: spec.Label, Summary: spec.Label}
	}
	t, err := vm.Object().Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd, FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate, Device: disk,
		},
	}})
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return Disk{}, fmt.Errorf("add a disk to %s: %w", vm.Name, err)
	}
	nvm, err := c.LoadVM(ctx, ref)
	if err != nil {
		return Disk{}, err
	}
	want := fmt.Sprintf("%s-%d", ctrlName, unit)
	for _, d := range nvm.Disks {
		if d.Name == want {
			return d, nil
		}
	}
	return Disk{}, fmt.Errorf("the disk added to %s at %s does not show", vm.Name, want)
}

func unitTaken(devices object.VirtualDeviceList, ctrl, unit int32) bool {
	for _, d := range devices {
		vd := d.GetVirtualDevice()
		if vd.ControllerKey == ctrl && vd.UnitNumber != nil && *vd.UnitNumber == unit {
			return true
		}
	}
	return false
}

func fileTaken(devices object.VirtualDeviceList, name string) bool {
	for _, d := range devices {
		if b, ok := d.GetVirtualDevice().Backing.(types.BaseVirtualDeviceFileBackingInfo); ok && b.GetVirtualDeviceFileBackingInfo().FileName == name {
			return true
		}
	}
	return false
}

// RemoveDisk detaches a disk from a VM and deletes its files.
func (c *Conn) RemoveDisk(ctx context.Context, ref types.ManagedObjectReference, key int32) error {
	vm, err := c.LoadVM(ctx, ref)
	if err != nil {
		return err
	}
	for _, d := range vm.Config.Hardware.Device {
		if d.GetVirtualDevice().Key != key {
			continue
		}
		t, err := vm.Object().Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, FileOperation: types.VirtualDeviceConfigSpecFileOperationDestroy, Device: d},
		}})
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("remove disk %d of %s: %w", key, vm.Name, err)
		}
		return nil
	}
	return fmt.Errorf("VM %s has no device %d", vm.Name, key)
}

// leaseKeepAlive is how often an import lease hears of progress.
const leaseKeepAlive = 30 * time.Second

// UploadFunc streams the disk recorded as name to an upload URL of an
// import lease.
type UploadFunc func(ctx context.Context, name string, capacity int64, u *url.URL, upload func(r io.Reader) error) error

// ImportVM creates the VM of spec as an OVF import does (ImportVApp of a
// VirtualMachineImportSpec: the VM and its disks in one step) and fills
// each disk through the import's HttpNfcLease: upload is called once per
// disk with the lease URL and a function that POSTs a streamOptimized
// VMDK to it. Nothing but vSphere itself is needed. On an error the lease
// is aborted and the VM destroyed.
func (c *Conn) ImportVM(ctx context.Context, spec CreateSpec, upload UploadFunc) (_ *CreatedVM, err error) {
	b, err := c.buildVM(ctx, spec)
	if err != nil {
		return nil, err
	}
	disks, err := b.diskChanges()
	if err != nil {
		return nil, err
	}
	if err := c.makeDiskDirs(ctx, b.p, b.name); err != nil {
		return nil, err
	}
	cs := b.cs
	cs.DeviceChange = append(cs.DeviceChange, disks...)
	// file base name ("web_1.vmdk") -> recorded disk
	byFile := map[string]vmconfig.Disk{}
	for i, dc := range disks {
		d := dc.GetVirtualDeviceConfigSpec().Device.(*types.VirtualDisk)
		fb := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName
		byFile[path.Base(fb)] = b.cfg.Disks[i]
	}
	lease, err := b.p.pool.ImportVApp(ctx, &types.VirtualMachineImportSpec{ConfigSpec: cs}, b.p.folder, b.p.host)
	if err != nil {
		return nil, fmt.Errorf("import VM %s: %w", b.name, err)
	}
	info, err := lease.Wait(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("import VM %s: %w", b.name, err)
	}
	ref := info.Entity
	defer func() {
		if err != nil {
			actx := context.WithoutCancel(ctx)
			_ = lease.Abort(actx, nil)
			if derr := c.DestroyVM(actx, ref); derr != nil {
				err = fmt.Errorf("%w (and removing the half-imported VM %s failed: %v)", err, b.name, derr)
			}
		}
	}()
	// A lease without progress reports times out (info.LeaseTimeout, 5
	// minutes on ESXi): report while a large disk uploads.
	var done atomic.Int32
	kctx, stopKeep := context.WithCancel(ctx)
	defer stopKeep()
	go func() {
		t := time.NewTicker(leaseKeepAlive)
		defer t.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-t.C:
				_ = lease.Progress(kctx, done.Load()*100/int32(max(1, len(disks))))
			}
		}
	}()
	for _, du := range info.DeviceUrl {
		if du.Disk == nil || !*du.Disk {
			continue
		}
		d, ok := byFile[du.TargetId]
		if !ok {
			d, ok = byFile[path.Base(du.Url)]
		}
		if !ok {
			return nil, fmt.Errorf("import VM %s: the lease offers disk %q (%s), which is not one of the VM's", b.name, du.TargetId, du.Key)
		}
		u, err := c.Client.ParseURL(du.Url)
		if err != nil {
			return nil, fmt.Errorf("import VM %s: lease URL: %w", b.name, err)
		}
		if u.Hostname() == "*" {
			u.Host = c.URL.Host
		}
		if du.SslThumbprint != "" {
			c.Client.SetThumbprint(u.Host, du.SslThumbprint)
		}
		put := func(r io.Reader) error {
			return c.Client.Upload(ctx, r, u, &soap.Upload{Method: "POST", Type: "application/x-vnd.vmware-streamVmdk", ContentLength: -1})
		}
		if err := upload(ctx, d.Name, d.Capacity, u, put); err != nil {
			return nil, fmt.Errorf("upload disk %s of %s: %w", d.Name, b.name, err)
		}
		done.Add(1)
		_ = lease.Progress(ctx, done.Load()*100/int32(max(1, len(disks))))
	}
	stopKeep()
	if int(done.Load()) != len(disks) {
		return nil, fmt.Errorf("import VM %s: the lease offered %d of its %d disks", b.name, done.Load(), len(disks))
	}
	if err := lease.Complete(ctx); err != nil {
		return nil, fmt.Errorf("import VM %s: complete the lease: %w", b.name, err)
	}
	return c.createdVM(ctx, ref, b)
}

package esxsim

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// Device keys as ESXi assigns them.
const (
	keySCSIController = 1000
	keySATAController = 15000
	keyNVMeController = 31000
	keySCSIDisk       = 2000
	keySATADisk       = 16000
	keyNVMeDisk       = 32000
	keyIDEController  = 200
	keyCDROM          = 3000
)

// buildInventory makes the datastore, mounted on every host, the VM
// folders and the VMs through the vSphere API.
func (s *Sim) buildInventory(ctx context.Context, o Options) error {
	finder := find.NewFinder(s.inproc, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return fmt.Errorf("find datacenter: %w", err)
	}
	finder.SetDatacenter(dc)
	s.Datacenter = dc.Name()
	hosts := make([]*object.HostSystem, o.Hosts)
	pools := make([]*object.ResourcePool, o.Hosts)
	var ds types.ManagedObjectReference
	dsRefs := map[string]types.ManagedObjectReference{}
	childPools := map[string]*object.ResourcePool{}
	for i := range hosts {
		name := fmt.Sprintf("%s_H%d", dc.Name(), i)
		host, err := finder.HostSystem(ctx, name)
		if err != nil {
			return fmt.Errorf("find host %s: %w", name, err)
		}
		hosts[i] = host
		s.Hosts = append(s.Hosts, host.Name())
		// The same name and path on every host: vcsim mounts the one
		// datastore on each of them, like shared storage.
		if ds, err = mountDatastore(ctx, host, s.Datastore, s.DatastoreDir); err != nil {
			return err
		}
		dsRefs[s.Datastore] = ds
		for _, n := range o.ExtraDatastores {
			if dsRefs[n], err = mountDatastore(ctx, host, n, s.dsDirs[n]); err != nil {
				return err
			}
		}
		if pools[i], err = host.ResourcePool(ctx); err != nil {
			return fmt.Errorf("resource pool of %s: %w", name, err)
		}
	}
	s.Host = s.Hosts[0]
	folders, err := dc.Folders(ctx)
	if err != nil {
		return fmt.Errorf("datacenter folders: %w", err)
	}
	vmFolders := map[string]*object.Folder{"": folders.VmFolder}
	specs := o.VMs
	if o.ProxyVM != "" {
		specs = append(specs, VMSpec{Name: o.ProxyVM, HardwareVersion: DefaultHardwareVersion})
	}
	for _, spec := range specs {
		folder, err := s.vmFolder(ctx, vmFolders, spec.Folder)
		if err != nil {
			return fmt.Errorf("create vm %s: %w", spec.Name, err)
		}
		pool := pools[spec.Host]
		if spec.ResourcePool != "" {
			key := fmt.Sprintf("%d/%s", spec.Host, spec.ResourcePool)
			if childPools[key] == nil {
				if childPools[key], err = pool.Create(ctx, spec.ResourcePool, types.DefaultResourceConfigSpec()); err != nil {
					return fmt.Errorf("create vm %s: resource pool %s: %w", spec.Name, spec.ResourcePool, err)
				}
			}
			pool = childPools[key]
		}
		if err := s.createVM(ctx, spec, folder, pool, hosts[spec.Host], dsRefs); err != nil {
			return fmt.Errorf("create vm %s: %w", spec.Name, err)
		}
	}
	return nil
}

// mountDatastore creates (or, when it exists, mounts) the local datastore on host.
func mountDatastore(ctx context.Context, host *object.HostSystem, name, dir string) (types.ManagedObjectReference, error) {
	dss, err := host.ConfigManager().DatastoreSystem(ctx)
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("datastore system of %s: %w", host.Name(), err)
	}
	ds, err := dss.CreateLocalDatastore(ctx, name, dir)
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("create datastore %s on %s at %s: %w", name, host.Name(), dir, err)
	}
	return ds.Reference(), nil
}

// vmFolder returns the folder at rel below the VM folder, creating the
// missing ones; made caches the folders by relative path.
func (s *Sim) vmFolder(ctx context.Context, made map[string]*object.Folder, rel string) (*object.Folder, error) {
	if f, ok := made[rel]; ok {
		return f, nil
	}
	parentPath, name := path.Split(rel)
	parent, err := s.vmFolder(ctx, made, strings.TrimSuffix(parentPath, "/"))
	if err != nil {
		return nil, err
	}
	f, err := parent.CreateFolder(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("create folder %s: %w", rel, err)
	}
	made[rel] = f
	return f, nil
}

// createVM creates one VM with real flat disk files and powers it on.
func (s *Sim) createVM(ctx context.Context, spec VMSpec, folder *object.Folder, pool *object.ResourcePool, host *object.HostSystem, dsRefs map[string]types.ManagedObjectReference) error {
	hw, _ := hardwareVersionNumber(spec.HardwareVersion)
	vm := &vmState{name: spec.Name, hwVersion: hw, failQuiesce: spec.FailQuiesce, attached: map[string]bool{}}
	guest := spec.GuestID
	if guest == "" {
		guest = string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest)
	}
	cfg := types.VirtualMachineConfigSpec{
		Name:              spec.Name,
		GuestId:           guest,
		Version:           spec.HardwareVersion,
		NumCPUs:           spec.NumCPUs,
		NumCoresPerSocket: spec.CoresPerSocket,
		MemoryMB:          spec.MemoryMB,
		Firmware:          spec.Firmware,
		Annotation:        spec.Annotation,
		Files:             &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", s.Datastore)},
	}
	if cfg.NumCPUs == 0 { // specs made without withDefaults (the proxy VM)
		cfg.NumCPUs, cfg.NumCoresPerSocket, cfg.MemoryMB, cfg.Firmware = 1, 1, 512, "bios"
	}
	if spec.Firmware == "efi" {
		cfg.BootOptions = &types.VirtualMachineBootOptions{EfiSecureBootEnabled: types.NewBool(spec.SecureBoot)}
	}
	for _, k := range sortedKeys(spec.ExtraConfig) {
		cfg.ExtraConfig = append(cfg.ExtraConfig, &types.OptionValue{Key: k, Value: spec.ExtraConfig[k]})
	}
	if spec.ChangeTracking && hw >= 7 {
		cfg.ChangeTrackingEnabled = types.NewBool(true)
		vm.cbt = true
	}
	add := func(d types.BaseVirtualDevice, op types.VirtualDeviceConfigSpecFileOperation) {
		cfg.DeviceChange = append(cfg.DeviceChange, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd, FileOperation: op, Device: d,
		})
	}
	add(scsiController(spec.SCSIController), "")
	need := map[string]bool{}
	for _, d := range spec.Disks {
		need[d.Controller] = true
	}
	if need[ControllerSATA] {
		add(&types.VirtualAHCIController{VirtualSATAController: types.VirtualSATAController{
			VirtualController: types.VirtualController{BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: keySATAController}},
		}}, "")
	}
	if need[ControllerNVMe] {
		add(&types.VirtualNVMEController{
			VirtualController: types.VirtualController{BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: keyNVMeController}},
		}, "")
	}
	units := map[string]int32{}
	for i, d := range spec.Disks {
		unit := units[d.Controller]
		if d.Controller == ControllerSCSI && unit == 7 {
			unit++ // the SCSI controller's own unit
		}
		units[d.Controller] = unit + 1
		ctrlKey, diskKey := int32(keySCSIController), int32(keySCSIDisk)
		switch d.Controller {
		case ControllerSATA:
			ctrlKey, diskKey = keySATAController, keySATADisk
		case ControllerNVMe:
			ctrlKey, diskKey = keyNVMeController, keyNVMeDisk
		}
		base := spec.Name
		if i > 0 {
			base = fmt.Sprintf("%s_%d", spec.Name, i)
		}
		uuid, err := newDiskUUID()
		if err != nil {
			return err
		}
		rel := path.Join(spec.Name, base+".vmdk")
		dsName := d.Datastore
		if dsName == "" {
			dsName = s.Datastore
		}
		ds := dsRefs[dsName]
		disk := &diskState{
			vm: vm, index: i, key: diskKey + unit, controller: d.Controller, uuid: uuid,
			dsPath:   fmt.Sprintf("[%s] %s", dsName, rel),
			descPath: filepath.Join(s.dsDirs[dsName], filepath.FromSlash(rel)),
			size:     d.Size, mode: d.Mode, rdm: d.RDM,
		}
		if dsName != s.Datastore {
			// vcsim creates the VM's directory on its files' datastore
			// only; ESXi's clients make it on the others first.
			if err := os.MkdirAll(filepath.Dir(disk.descPath), 0o755); err != nil {
				return err
			}
		}
		disk.flatPath = flatName(disk.descPath)
		if err := disk.track.start(vm.cbt, disk.size); err != nil {
			return err
		}
		vm.disks = append(vm.disks, disk)
		u := unit
		add(&types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{
				Key: disk.key, ControllerKey: ctrlKey, UnitNumber: &u,
				// ESXi labels disks "Hard disk N" in creation order (vcsim
				// would make "disk-KEY-UNIT").
				DeviceInfo: &types.Description{Label: fmt.Sprintf("Hard disk %d", i+1)},
				Backing: &types.VirtualDiskFlatVer2BackingInfo{
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: disk.dsPath, Datastore: &ds},
					DiskMode:                     orPersistent(d.Mode),
					ThinProvisioned:              types.NewBool(d.Provisioning == "" || d.Provisioning == "thin"),
					EagerlyScrub:                 types.NewBool(d.Provisioning == "eager"),
				},
			},
			CapacityInBytes: d.Size,
			CapacityInKB:    d.Size / 1024,
		}, types.VirtualDeviceConfigSpecFileOperationCreate)
	}
	for i, n := range spec.NICs {
		add(nicDevice(n, int32(4000+i)), "")
	}
	if spec.CDROM {
		unit := int32(0)
		// vcsim gives every VM the IDE controllers 200 and 201, as ESXi does
		add(&types.VirtualCdrom{VirtualDevice: types.VirtualDevice{
			Key: keyCDROM, ControllerKey: keyIDEController, UnitNumber: &unit,
			Backing:     &types.VirtualCdromRemotePassthroughBackingInfo{VirtualDeviceRemoteDeviceBackingInfo: types.VirtualDeviceRemoteDeviceBackingInfo{}},
			Connectable: &types.VirtualDeviceConnectInfo{AllowGuestControl: true},
		}}, "")
	}
	hostRef := host.Reference()
	task, err := folder.CreateVM(ctx, cfg, pool, object.NewHostSystem(s.inproc, hostRef))
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return err
	}
	vm.ref = info.Result.(types.ManagedObjectReference)
	for _, d := range vm.disks {
		if err := createFlat(d.flatPath, d.size); err != nil {
			return err
		}
		if err := writeDescriptor(d.descPath, d.size, d.uuid, adapterType(d.controller), vm.hwVersion); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.vms[vm.name] = vm
	s.byRef[vm.ref.Value] = vm
	s.mu.Unlock()
	if err := s.fixupCreatedVM(vm); err != nil {
		return err
	}
	if err := s.applyRDMs(vm); err != nil {
		return err
	}
	if err := s.writeVMFiles(ctx, vm); err != nil {
		return err
	}
	if spec.Template {
		if err := object.NewVirtualMachine(s.inproc, vm.ref).MarkAsTemplate(ctx); err != nil {
			return fmt.Errorf("mark as template: %w", err)
		}
	}
	if !spec.PoweredOff {
		task, err := object.NewVirtualMachine(s.inproc, vm.ref).PowerOn(ctx)
		if err != nil {
			return fmt.Errorf("power on: %w", err)
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("power on: %w", err)
		}
	}
	return nil
}

func adapterType(controller string) string {
	switch controller {
	case ControllerSATA, ControllerNVMe:
		return "ide" // ESXi writes "ide" for SATA; NVMe disks carry no adapter hint
	default:
		return "lsilogic"
	}
}

// newDiskUUID makes a disk uuid in the 6000C29x-... form ESXi gives disks.
func newDiskUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("disk uuid: %w", err)
	}
	b[0], b[1], b[2] = 0x60, 0x00, 0xc2
	b[3] = 0x90 | b[3]&0x0f
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// VMConfig converts a VM's configuration to the form points record:
// identity, firmware, CPUs, memory, controllers, disks (named as DisksOf
// names them), NICs, CD-ROMs, the annotation and extraConfig without the
// keys vmconfig.SecretKey drops.
func VMConfig(name string, cfg *types.VirtualMachineConfigInfo) vmconfig.Config {
	c := vmconfig.Config{
		Version: vmconfig.Version, Name: name, Firmware: vmconfig.FirmwareBIOS,
		Controllers: []vmconfig.Controller{}, Disks: []vmconfig.Disk{}, NICs: []vmconfig.NIC{},
	}
	if cfg == nil {
		return c
	}
	c.BIOSUUID, c.InstanceUUID = cfg.Uuid, cfg.InstanceUuid
	c.GuestID, c.GuestFullName, c.HardwareVersion = cfg.GuestId, cfg.GuestFullName, cfg.Version
	if cfg.Firmware == string(types.GuestOsDescriptorFirmwareTypeEfi) {
		c.Firmware = vmconfig.FirmwareEFI
	}
	if cfg.BootOptions != nil && cfg.BootOptions.EfiSecureBootEnabled != nil {
		c.SecureBoot = *cfg.BootOptions.EfiSecureBootEnabled && c.Firmware == vmconfig.FirmwareEFI
	}
	c.CPUs, c.CoresPerSocket, c.MemoryMB = int(cfg.Hardware.NumCPU), int(cfg.Hardware.NumCoresPerSocket), int64(cfg.Hardware.MemoryMB)
	c.VMXPath = cfg.Files.VmPathName
	c.Annotation = cfg.Annotation
	extra := map[string]string{}
	for _, o := range cfg.ExtraConfig {
		ov := o.GetOptionValue()
		extra[ov.Key] = fmt.Sprint(ov.Value)
	}
	c.NVRAMPath = nvramPath(c.VMXPath, extra["nvram"])
	c.ExtraConfig, c.DroppedExtraConfig = vmconfig.FilterExtraConfig(extra)

	devices := object.VirtualDeviceList(cfg.Hardware.Device)
	ctrls := map[int32]vmconfig.Controller{}
	for _, d := range devices {
		key := d.GetVirtualDevice().Key
		var ct vmconfig.Controller
		switch x := d.(type) {
		case *types.ParaVirtualSCSIController:
			ct = vmconfig.Controller{Type: vmconfig.ControllerPVSCSI, Bus: x.BusNumber}
		case *types.VirtualLsiLogicController:
			ct = vmconfig.Controller{Type: vmconfig.ControllerLSILogic, Bus: x.BusNumber}
		case *types.VirtualLsiLogicSASController:
			ct = vmconfig.Controller{Type: vmconfig.ControllerLSILogicSAS, Bus: x.BusNumber}
		case *types.VirtualBusLogicController:
			ct = vmconfig.Controller{Type: vmconfig.ControllerBusLogic, Bus: x.BusNumber}
		case types.BaseVirtualSATAController:
			ct = vmconfig.Controller{Type: vmconfig.ControllerAHCI, Bus: x.GetVirtualSATAController().BusNumber}
		case *types.VirtualNVMEController:
			ct = vmconfig.Controller{Type: vmconfig.ControllerNVMe, Bus: x.BusNumber}
		case *types.VirtualIDEController:
			ct = vmconfig.Controller{Type: vmconfig.ControllerIDE, Bus: x.BusNumber}
		default:
			continue
		}
		ct.Key = key
		ctrls[key] = ct
		c.Controllers = append(c.Controllers, ct)
	}
	sort.Slice(c.Controllers, func(i, j int) bool { return c.Controllers[i].Key < c.Controllers[j].Key })
	names := map[int32]string{}
	for _, d := range DisksOf(devices) {
		names[d.Key] = d.Name
	}
	for _, d := range devices {
		vd := d.GetVirtualDevice()
		unit := int32(-1)
		if vd.UnitNumber != nil {
			unit = *vd.UnitNumber
		}
		ct := ctrls[vd.ControllerKey]
		switch x := d.(type) {
		case *types.VirtualDisk:
			disk := vmconfig.Disk{
				Name: names[vd.Key], Key: vd.Key, ControllerKey: vd.ControllerKey, ControllerType: ct.Type,
				Bus: ct.Bus, Unit: unit, Capacity: x.CapacityInBytes, Provisioning: vmconfig.ProvisioningThick,
			}
			if disk.Capacity == 0 {
				disk.Capacity = x.CapacityInKB * 1024
			}
			if vd.DeviceInfo != nil {
				disk.Label = vd.DeviceInfo.GetDescription().Label
			}
			if fb, ok := vd.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				disk.FileName = fb.GetVirtualDeviceFileBackingInfo().FileName
				var dp object.DatastorePath
				if dp.FromString(disk.FileName) {
					disk.Datastore = dp.Datastore
				}
			}
			switch b := vd.Backing.(type) {
			case *types.VirtualDiskFlatVer2BackingInfo:
				disk.UUID, disk.Mode = b.Uuid, b.DiskMode
				switch {
				case b.ThinProvisioned != nil && *b.ThinProvisioned:
					disk.Provisioning = vmconfig.ProvisioningThin
				case b.EagerlyScrub != nil && *b.EagerlyScrub:
					disk.Provisioning = vmconfig.ProvisioningEager
				}
			case *types.VirtualDiskSparseVer2BackingInfo:
				disk.UUID, disk.Mode, disk.Provisioning = b.Uuid, b.DiskMode, vmconfig.ProvisioningThin
			case *types.VirtualDiskSeSparseBackingInfo:
				disk.UUID, disk.Mode, disk.Provisioning = b.Uuid, b.DiskMode, vmconfig.ProvisioningThin
			case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
				disk.UUID, disk.Mode = b.Uuid, b.DiskMode
				disk.RDM, disk.RDMDevice = orDefault(b.CompatibilityMode, string(types.VirtualDiskCompatibilityModeVirtualMode)), b.DeviceName
			}
			c.Disks = append(c.Disks, disk)
		case types.BaseVirtualEthernetCard:
			e := x.GetVirtualEthernetCard()
			nic := vmconfig.NIC{Key: vd.Key, AdapterType: nicType(x), MAC: e.MacAddress, AddressType: e.AddressType}
			if vd.DeviceInfo != nil {
				nic.Label = vd.DeviceInfo.GetDescription().Label
			}
			switch b := vd.Backing.(type) {
			case *types.VirtualEthernetCardNetworkBackingInfo:
				nic.Network = b.DeviceName
			case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
				nic.Network = "dvportgroup:" + b.Port.PortgroupKey
			case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
				nic.Network = "opaque:" + b.OpaqueNetworkId
			}
			if vd.Connectable != nil {
				nic.Connected = vd.Connectable.StartConnected
			}
			c.NICs = append(c.NICs, nic)
		case *types.VirtualCdrom:
			cd := vmconfig.CDROM{Key: vd.Key, ControllerKey: vd.ControllerKey, ControllerType: ct.Type, Bus: ct.Bus, Unit: unit, Backing: "none"}
			switch b := vd.Backing.(type) {
			case *types.VirtualCdromIsoBackingInfo:
				cd.Backing, cd.ISO = "iso", b.FileName
			case *types.VirtualCdromAtapiBackingInfo, *types.VirtualCdromPassthroughBackingInfo:
				cd.Backing = "host"
			case *types.VirtualCdromRemoteAtapiBackingInfo, *types.VirtualCdromRemotePassthroughBackingInfo:
				cd.Backing = "client"
			}
			if vd.Connectable != nil {
				cd.Connected = vd.Connectable.StartConnected
			}
			c.CDROMs = append(c.CDROMs, cd)
		}
	}
	sort.Slice(c.Disks, func(i, j int) bool { return c.Disks[i].Name < c.Disks[j].Name })
	sort.Slice(c.NICs, func(i, j int) bool { return c.NICs[i].Key < c.NICs[j].Key })
	return c
}

// nvramPath is the datastore path of the .nvram file: extraConfig's
// "nvram" (relative to the .vmx's directory) or <vmx base>.nvram.
func nvramPath(vmxPath, nvram string) string {
	var p object.DatastorePath
	if !p.FromString(vmxPath) || p.Path == "" {
		return ""
	}
	dir := path.Dir(p.Path)
	if nvram == "" {
		nvram = path.Base(p.Path)
		nvram = nvram[:len(nvram)-len(path.Ext(nvram))] + ".nvram"
	}
	if path.IsAbs(nvram) {
		return "" // a path outside the datastore: not downloadable by name
	}
	p.Path = path.Join(dir, nvram)
	return p.String()
}

func nicType(d types.BaseVirtualEthernetCard) string {
	switch d.(type) {
	case *types.VirtualVmxnet3, *types.VirtualVmxnet3Vrdma:
		return "vmxnet3"
	case *types.VirtualVmxnet2:
		return "vmxnet2"
	case *types.VirtualVmxnet:
		return "vmxnet"
	case *types.VirtualE1000e:
		return "e1000e"
	case *types.VirtualE1000:
		return "e1000"
	case *types.VirtualPCNet32:
		return "pcnet32"
	case *types.VirtualSriovEthernetCard:
		return "sriov"
	}
	return "e1000"
}

// ErrFileTooLarge means a datastore file is larger than the caller allows.
var ErrFileTooLarge = errors.New("datastore file too large")

// DownloadFile reads a file of one of the VM's datastores ("[ds] vm/vm.vmx")
// over the datastore HTTP interface (/folder), at most limit bytes.
func (v *VM) DownloadFile(ctx context.Context, dsPath string, limit int64) ([]byte, error) {
	var p object.DatastorePath
	if !p.FromString(dsPath) || p.Path == "" {
		return nil, fmt.Errorf("%q is not a datastore path", dsPath)
	}
	var m mo.VirtualMachine
	pc := property.DefaultCollector(v.conn.Client)
	if err := pc.RetrieveOne(ctx, v.Ref, []string{"datastore"}, &m); err != nil {
		return nil, fmt.Errorf("datastores of VM %s: %w", v.Name, err)
	}
	var ds *object.Datastore
	for _, ref := range m.Datastore {
		var dm mo.Datastore
		if err := pc.RetrieveOne(ctx, ref, []string{"name"}, &dm); err != nil {
			return nil, fmt.Errorf("datastore %s: %w", ref.Value, err)
		}
		if dm.Name == p.Datastore {
			ds = object.NewDatastore(v.conn.Client, ref)
			break
		}
	}
	if ds == nil {
		return nil, fmt.Errorf("download %s: datastore %s is not one of VM %s's datastores", dsPath, p.Datastore, v.Name)
	}
	if err := ds.FindInventoryPath(ctx); err != nil {
		return nil, fmt.Errorf("download %s: inventory path of datastore: %w", dsPath, err)
	}
	rc, size, err := ds.Download(ctx, p.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", dsPath, err)
	}
	defer rc.Close()
	if size > limit {
		return nil, fmt.Errorf("download %s: %d bytes: %w (limit %d)", dsPath, size, ErrFileTooLarge, limit)
	}
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", dsPath, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("download %s: %w (limit %d)", dsPath, ErrFileTooLarge, limit)
	}
	return data, nil
}

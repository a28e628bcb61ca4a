package vsphere

import (
	"fmt"
	"sort"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// Disk is one virtual disk of a VM or of a snapshot.
type Disk struct {
	// Name is stable across backups: controller type, bus and unit,
	// "scsi0-0", "sata0-1", "nvme0-0", "ide0-1".
	Name     string
	Key      int32
	Label    string
	FileName string // datastore path of the backing, "[ds] vm/vm.vmdk"
	Capacity int64  // bytes
	UUID     string
	ChangeID string // backing.changeId ("" when CBT is off)
	// Datastore is the MoRef value of the backing's datastore, if known.
	Datastore string
}

// DisksOf lists the virtual disks of a device list, sorted by name.
func DisksOf(devices object.VirtualDeviceList) []Disk {
	ctrls := map[int32]string{}
	for _, d := range devices {
		vd := d.GetVirtualDevice()
		var bus int32
		prefix := ""
		switch c := d.(type) {
		case types.BaseVirtualSCSIController:
			prefix, bus = "scsi", c.GetVirtualSCSIController().BusNumber
		case types.BaseVirtualSATAController:
			prefix, bus = "sata", c.GetVirtualSATAController().BusNumber
		case *types.VirtualNVMEController:
			prefix, bus = "nvme", c.BusNumber
		case *types.VirtualIDEController:
			prefix, bus = "ide", c.BusNumber
		default:
			continue
		}
		ctrls[vd.Key] = fmt.Sprintf("%s%d", prefix, bus)
	}
	var out []Disk
	for _, d := range devices {
		vd, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		disk := Disk{Key: vd.Key, Capacity: vd.CapacityInBytes}
		if disk.Capacity == 0 {
			disk.Capacity = vd.CapacityInKB * 1024
		}
		if vd.DeviceInfo != nil {
			disk.Label = vd.DeviceInfo.GetDescription().Label
		}
		ctrl, ok := ctrls[vd.ControllerKey]
		if !ok {
			ctrl = fmt.Sprintf("ctrl%d", vd.ControllerKey)
		}
		unit := int32(-1)
		if vd.UnitNumber != nil {
			unit = *vd.UnitNumber
		}
		disk.Name = fmt.Sprintf("%s-%d", ctrl, unit)
		if unit < 0 {
			disk.Name = fmt.Sprintf("%s-key%d", ctrl, vd.Key)
		}
		if fb, ok := vd.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			info := fb.GetVirtualDeviceFileBackingInfo()
			disk.FileName = info.FileName
			if info.Datastore != nil {
				disk.Datastore = info.Datastore.Value
			}
		}
		switch b := vd.Backing.(type) {
		case *types.VirtualDiskFlatVer2BackingInfo:
			disk.UUID, disk.ChangeID = b.Uuid, b.ChangeId
		case *types.VirtualDiskSparseVer2BackingInfo:
			disk.UUID, disk.ChangeID = b.Uuid, b.ChangeId
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			disk.UUID, disk.ChangeID = b.Uuid, b.ChangeId
		case *types.VirtualDiskSeSparseBackingInfo:
			disk.UUID, disk.ChangeID = b.Uuid, b.ChangeId
		}
		out = append(out, disk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

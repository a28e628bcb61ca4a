package vsphere

import (
	"fmt"
	"sort"
	"strings"

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
	// Mode is the backing's diskMode ("persistent", "independent_persistent",
	// "independent_nonpersistent", ...; "" when the backing has none).
	Mode string
	// RDM is the compatibility mode of a raw device mapping
	// ("physicalMode" or "virtualMode"), "" for a virtual disk; RDMDevice
	// is the mapped LUN's device name.
	RDM       string
	RDMDevice string
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
			disk.UUID, disk.ChangeID, disk.Mode = b.Uuid, b.ChangeId, b.DiskMode
		case *types.VirtualDiskSparseVer2BackingInfo:
			disk.UUID, disk.ChangeID, disk.Mode = b.Uuid, b.ChangeId, b.DiskMode
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			disk.UUID, disk.ChangeID, disk.Mode = b.Uuid, b.ChangeId, b.DiskMode
			disk.RDM, disk.RDMDevice = b.CompatibilityMode, b.DeviceName
			if disk.RDM == "" {
				disk.RDM = string(types.VirtualDiskCompatibilityModeVirtualMode)
			}
		case *types.VirtualDiskSeSparseBackingInfo:
			disk.UUID, disk.ChangeID, disk.Mode = b.Uuid, b.ChangeId, b.DiskMode
		}
		out = append(out, disk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Kinds of disks a backup leaves out (SkipKind).
const (
	// SkipIndependent: an independent disk (independent_persistent or
	// independent_nonpersistent); snapshots do not include it, so no
	// consistent copy of it can be read.
	SkipIndependent = "independent"
	// SkipRDMPhysical: a raw device mapping in physical compatibility
	// mode; snapshots do not include it either.
	SkipRDMPhysical = "rdm-physical"
	// SkipExcluded: a disk the job's exclusions name.
	SkipExcluded = "excluded"
)

// SkipKind says why a snapshot cannot hold the disk (SkipIndependent,
// SkipRDMPhysical), "" when it can: ESXi leaves independent disks and
// physical-mode RDMs out of snapshots, and the snapshot's configuration
// then still points at the live disk.
func (d Disk) SkipKind() string {
	switch {
	case d.RDM == string(types.VirtualDiskCompatibilityModePhysicalMode):
		return SkipRDMPhysical
	case strings.HasPrefix(d.Mode, "independent"):
		return SkipIndependent
	}
	return ""
}

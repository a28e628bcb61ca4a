package vsphere

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// ChangedAreasOfBase asks QueryChangedDiskAreas, without a snapshot, which
// areas of the VM's current disk changed since changeID: the question of
// a quick rollback. vSphere answers it only for a powered-off VM. A
// changeId of another epoch (CBT reset, disk extended) is a
// *ChangeIDRejectedError. It pages like ChangedAreas.
func (v *VM) ChangedAreasOfBase(ctx context.Context, disk Disk, changeID string) ([]Extent, error) {
	var out []Extent
	for off := int64(0); off < disk.Capacity; {
		res, err := methods.QueryChangedDiskAreas(ctx, v.conn.Client, &types.QueryChangedDiskAreas{
			This: v.Ref, DeviceKey: disk.Key, StartOffset: off, ChangeId: changeID,
		})
		if err != nil {
			if fault.Is(err, &types.FileFault{}) || fault.Is(err, &types.InvalidArgument{}) {
				return nil, &ChangeIDRejectedError{ChangeID: changeID, Err: err}
			}
			return nil, fmt.Errorf("QueryChangedDiskAreas of disk %s at offset %d: %w", disk.Name, off, err)
		}
		info := res.Returnval
		for _, a := range info.ChangedArea {
			if a.Length > 0 {
				out = append(out, Extent{Offset: a.Start, Length: a.Length})
			}
		}
		next := info.StartOffset + info.Length
		if next <= off {
			return nil, fmt.Errorf("QueryChangedDiskAreas of disk %s at offset %d made no progress", disk.Name, off)
		}
		off = next
	}
	return out, nil
}

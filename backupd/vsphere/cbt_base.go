package vsphere

import "context"

// ChangedAreasOfBase asks QueryChangedDiskAreas, without a snapshot, which
// areas of the VM's current disk changed since changeID: the question of
// a quick rollback. vSphere answers it only for a powered-off VM. A
// changeId of another epoch (CBT reset, disk extended) is a
// *ChangeIDRejectedError. It pages like ChangedAreas.
func (v *VM) ChangedAreasOfBase(ctx context.Context, disk Disk, changeID string) ([]Extent, error) {
	return v.changedAreas(ctx, nil, disk, changeID)
}

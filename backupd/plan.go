package backupd

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// planDisk decides between an incremental read since the stored changeId
// and a full read, and asks CBT for the areas.
func planDisk(ctx context.Context, hv Hypervisor, vm *vsphere.VM, snap *vsphere.Snapshot, d vsphere.Disk, base *blockmap.Point) (Plan, error) {
	prev, reason := previousChangeID(d, base)
	if reason == "" {
		areas, err := hv.ChangedAreas(ctx, vm, snap, d, prev)
		var rej *vsphere.ChangeIDRejectedError
		switch {
		case errors.As(err, &rej):
			reason = fmt.Sprintf("stored changeId rejected by vSphere (%v)", rej.Err)
		case err != nil:
			return Plan{}, err
		default:
			return Plan{Since: prev, Areas: toExtents(areas), AreasKnown: true}, nil
		}
	}
	return fullPlan(ctx, hv, vm, snap, d, reason)
}

// fullPlan asks CBT for every allocated area ("*"), or leaves the extents
// to the transport's allocation map when the disk has no changeId.
func fullPlan(ctx context.Context, hv Hypervisor, vm *vsphere.VM, snap *vsphere.Snapshot, d vsphere.Disk, reason string) (Plan, error) {
	p := Plan{Full: true, Reason: reason}
	if d.ChangeID == "" {
		return p, nil
	}
	areas, err := hv.ChangedAreas(ctx, vm, snap, d, "*")
	if err != nil {
		return p, err
	}
	p.Since, p.Areas, p.AreasKnown = "*", toExtents(areas), true
	return p, nil
}

// previousChangeID returns the changeId to query since, or why the disk
// must be read in full.
func previousChangeID(d vsphere.Disk, base *blockmap.Point) (string, string) {
	if base == nil {
		return "", "first backup of this VM"
	}
	bd, ok := base.Disk(d.Name)
	if !ok {
		return "", "first backup of this disk"
	}
	meta, _ := ReadDiskMeta(bd)
	switch {
	case meta.ChangeID == "":
		return "", "the previous point stored no changeId"
	case d.ChangeID == "":
		return "", "changed block tracking gives this disk no changeId"
	case bd.Size != d.Capacity:
		return "", fmt.Sprintf("disk size changed from %d to %d bytes", bd.Size, d.Capacity)
	case vsphere.ChangeIDEpoch(meta.ChangeID) != vsphere.ChangeIDEpoch(d.ChangeID):
		return "", fmt.Sprintf("changed block tracking was reset (stored changeId %q is from another epoch than %q)", meta.ChangeID, d.ChangeID)
	}
	return meta.ChangeID, ""
}

func toExtents(areas []vsphere.Extent) []blockmap.Extent {
	out := make([]blockmap.Extent, len(areas))
	for i, a := range areas {
		out[i] = blockmap.Extent{Offset: a.Offset, Length: a.Length}
	}
	return out
}

package backupd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// RestoreDiskRequest says which disk of a point goes to which VM.
type RestoreDiskRequest struct {
	Point blockmap.Point
	// Disk is the disk's name in the point ("scsi0-1").
	Disk string
	// TargetVM receives the restored copy as a new disk.
	TargetVM string
	// Controller of the target ("scsi0"); "" picks one with a free unit.
	Controller   string
	Provisioning string
	VCenter      string
}

// RestoreDisk creates a new disk of the point disk's capacity on the
// target VM, writes the point's data areas to it and leaves it attached:
// the "restore a data disk to a helper VM" case. A failure removes the
// new disk again. The job is recorded like a VM restore.
func RestoreDisk(ctx context.Context, repo *blockmap.Repo, hv RestoreHypervisor, req RestoreDiskRequest, opts RestoreOptions) (res *RestoreResult, err error) {
	pd, ok := req.Point.Disk(req.Disk)
	if !ok {
		if sd, left := SkippedDiskOf(req.Point, req.Disk); left {
			return nil, fmt.Errorf("point %s of %s holds no data of disk %s: the backup left it out (%s)", req.Point.ID, req.Point.VM, req.Disk, sd.Reason)
		}
		return nil, fmt.Errorf("point %s of %s has no disk %s (it has %s)", req.Point.ID, req.Point.VM, req.Disk, diskNames(req.Point))
	}
	j := newRestoreJob(repo, hv, opts)
	finish := j.record(req.Point, req.VCenter)
	defer func() { finish(res, Cancelled(ctx, err)) }()
	vm, err := hv.LookupVM(ctx, req.TargetVM)
	if err != nil {
		return nil, err
	}
	j.vm = vm
	base := "cairn-" + strings.NewReplacer("/", "_", " ", "_").Replace(req.Point.VM) + "-" + req.Disk
	disk, err := hv.AddDisk(ctx, vm, vsphere.AddDiskSpec{
		Controller: req.Controller, Capacity: pd.Size, Provisioning: req.Provisioning, FileBase: base,
	})
	if err != nil {
		return nil, err
	}
	j.log.Info("disk added for restore", "vm", vm.Name, "disk", disk.Name, "file", disk.FileName)
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if rerr := hv.RemoveDisk(cctx, vm, disk); rerr != nil {
				err = fmt.Errorf("%w (and removing the new disk %s of %s failed: %v; remove it in vSphere)", err, disk.FileName, vm.Name, rerr)
			}
		}
	}()
	dr, err := j.writeDisk(ctx, req.Point, req.Disk, disk, nil, false)
	if err != nil {
		return nil, err
	}
	return &RestoreResult{JobID: j.id, VM: vm.Name, MoRef: vm.Ref.Value, Point: req.Point.ID, Mode: "disk", Disks: []RestoreDiskResult{dr}}, nil
}

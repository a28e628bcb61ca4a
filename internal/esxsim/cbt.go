package esxsim

import (
	"fmt"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// QueryChangedDiskAreas answers like ESXi: changeId "*" gives the allocated
// (non-zero) areas of the disk at the snapshot, "<epoch>/<seq>" the areas
// written since that changeId was handed out, a page of at most
// MaxChangedAreas extents at a time.
func (h *vmHandler) QueryChangedDiskAreas(ctx *simulator.Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	body := &methods.QueryChangedDiskAreasBody{}
	info, msg, fault := h.sim.queryChangedDiskAreas(h.Self, h.Runtime.PowerState, req)
	if fault != nil {
		body.Fault_ = simulator.Fault(msg, fault)
		return body
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: info}
	return body
}

func (s *Sim) queryChangedDiskAreas(self types.ManagedObjectReference, power types.VirtualMachinePowerState, req *types.QueryChangedDiskAreas) (types.DiskChangeInfo, string, types.BaseMethodFault) {
	var none types.DiskChangeInfo
	s.mu.Lock()
	defer s.mu.Unlock()
	vm, ok := s.byRef[self.Value]
	if !ok {
		return none, "vm not simulated by esxsim", &types.NotSupported{}
	}
	var fd *frozenDisk
	if req.Snapshot != nil {
		snap, ok := s.snapshots[req.Snapshot.Value]
		if !ok || snap.vm != vm {
			return none, fmt.Sprintf("snapshot %s is not a snapshot of %s", req.Snapshot.Value, vm.name),
				&types.InvalidArgument{InvalidProperty: "snapshot"}
		}
		for _, d := range snap.disks {
			if d.key == req.DeviceKey {
				fd = d
			}
		}
	} else {
		if power != types.VirtualMachinePowerStatePoweredOff {
			return none, "the virtual machine must be powered off to query without a snapshot",
				&types.InvalidState{}
		}
		for _, d := range vm.disks {
			if d.key == req.DeviceKey {
				fd = &frozenDisk{disk: d, key: d.key, dsPath: d.dsPath, flatPath: d.flatPath, size: d.size,
					track: frozenTracking{epoch: d.track.epoch, seq: d.track.seq, stamps: d.track.stamps}}
			}
		}
	}
	if fd == nil {
		return none, fmt.Sprintf("no disk with device key %d", req.DeviceKey),
			&types.InvalidArgument{InvalidProperty: "deviceKey"}
	}
	if req.StartOffset < 0 || req.StartOffset >= fd.size {
		return none, fmt.Sprintf("startOffset %d outside the disk (%d bytes)", req.StartOffset, fd.size),
			&types.InvalidArgument{InvalidProperty: "startOffset"}
	}
	if fd.track.epoch == "" {
		return none, fmt.Sprintf("Error caused by file %s: change tracking is not enabled for this disk", fd.dsPath),
			&types.FileFault{File: fd.dsPath}
	}
	var blocks []int64
	if req.ChangeId == "*" {
		if !fd.scanned {
			b, err := nonZeroBlocks(fd.flatPath, fd.size, BlockSize)
			if err != nil {
				return none, err.Error(), &types.FileFault{File: fd.dsPath}
			}
			fd.allocated, fd.scanned = b, true
		}
		blocks = fd.allocated
	} else {
		epoch, seq, ok := parseChangeID(req.ChangeId)
		if !ok {
			return none, "A specified parameter was not correct: changeId", &types.InvalidArgument{InvalidProperty: "changeId"}
		}
		if epoch != fd.track.epoch {
			return none, fmt.Sprintf("Error caused by file %s", fd.dsPath), &types.FileFault{File: fd.dsPath}
		}
		if seq > fd.track.seq {
			return none, "A specified parameter was not correct: changeId", &types.InvalidArgument{InvalidProperty: "changeId"}
		}
		blocks = fd.track.changedBlocks(seq)
	}
	return changeInfo(blocks, fd.size, req.StartOffset, s.maxAreas), "", nil
}

package vsphere

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// ErrCBTUnsupported means the VM cannot track changed blocks (virtual
// hardware older than version 7, or a host that refuses it).
var ErrCBTUnsupported = errors.New("changed block tracking is not supported")

// Extent is a byte range of a disk.
type Extent struct {
	Offset int64
	Length int64
}

// EnableCBT switches Changed Block Tracking on when it is off and makes it
// effective with a snapshot create/remove cycle (ESXi applies the setting
// at the next stun). It reports whether it changed anything.
func (v *VM) EnableCBT(ctx context.Context) (bool, error) {
	if !v.CBTSupported {
		return false, fmt.Errorf("VM %s (hardware version %s): %w; upgrade the virtual hardware to version 7 or later", v.Name, v.HardwareVersion, ErrCBTUnsupported)
	}
	if v.CBTEnabled {
		return false, nil
	}
	if err := v.CheckSnapshotable(ctx); err != nil {
		return false, err
	}
	on := true
	task, err := v.Object().Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &on})
	if err == nil {
		_, err = task.WaitForResult(ctx)
	}
	if err != nil {
		if fault.Is(err, &types.NotSupported{}) {
			return false, fmt.Errorf("enable CBT on VM %s (hardware version %s): %w: %v", v.Name, v.HardwareVersion, ErrCBTUnsupported, err)
		}
		return false, fmt.Errorf("enable CBT on VM %s: %w", v.Name, err)
	}
	v.conn.log.Info("changed block tracking enabled", "vm", v.Name)
	ref, err := v.checkedSnapshot(ctx, SnapshotPrefix+"cbt-enable", false)
	if IsNotSnapshotable(err) {
		return true, err
	}
	if err != nil {
		return true, fmt.Errorf("snapshot VM %s to make CBT effective: %w", v.Name, err)
	}
	if err := v.RemoveSnapshot(ref); err != nil {
		return true, err
	}
	v.CBTEnabled = true
	return true, nil
}

// ChangeIDEpoch is the part of a changeId that names the tracking epoch
// ("52 de ... 7a/42" -> "52 de ... 7a"): changeIds of different epochs
// cannot be compared.
func ChangeIDEpoch(id string) string {
	if i := strings.LastIndex(id, "/"); i >= 0 {
		return id[:i]
	}
	return id
}

// ChangeIDRejectedError means the server refused a stored changeId (CBT was
// reset, the disk was extended, or the id is from elsewhere): the disk must
// be read in full.
type ChangeIDRejectedError struct {
	ChangeID string
	Err      error
}

func (e *ChangeIDRejectedError) Error() string {
	return fmt.Sprintf("changeId %q rejected by the server: %v", e.ChangeID, e.Err)
}

func (e *ChangeIDRejectedError) Unwrap() error { return e.Err }

// maxChangedAreas bounds the changed-area list of one disk (16 bytes an
// area: 64 MiB). ESXi reports areas of at least its CBT granularity, so a
// real list stays far below it; a longer one is refused, not held.
var maxChangedAreas = 4 << 20

// ChangedAreas asks QueryChangedDiskAreas for the areas of the disk (at the
// snapshot) that changed since changeID ("*" for every allocated area).
// It loops over startOffset until the end of the disk: each answer covers
// [StartOffset, StartOffset+Length), the next query starts right there
// (set, not added), and an empty page does not end the loop.
func (v *VM) ChangedAreas(ctx context.Context, snap types.ManagedObjectReference, disk Disk, changeID string) ([]Extent, error) {
	return v.changedAreas(ctx, &snap, disk, changeID)
}

// changedAreas pages QueryChangedDiskAreas of the disk at snap (nil: the
// VM's current disk) since changeID.
func (v *VM) changedAreas(ctx context.Context, snap *types.ManagedObjectReference, disk Disk, changeID string) ([]Extent, error) {
	var out []Extent
	for off := int64(0); off < disk.Capacity; {
		res, err := methods.QueryChangedDiskAreas(ctx, v.conn.Client, &types.QueryChangedDiskAreas{
			This: v.Ref, Snapshot: snap, DeviceKey: disk.Key, StartOffset: off, ChangeId: changeID,
		})
		if err != nil {
			if changeID != "*" && (fault.Is(err, &types.FileFault{}) || fault.Is(err, &types.InvalidArgument{})) {
				return nil, &ChangeIDRejectedError{ChangeID: changeID, Err: err}
			}
			return nil, fmt.Errorf("QueryChangedDiskAreas of disk %s at offset %d: %w", disk.Name, off, err)
		}
		info := res.Returnval
		for _, a := range info.ChangedArea {
			if a.Length <= 0 {
				continue
			}
			if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == a.Start {
				out[n-1].Length += a.Length // touching areas merge as they arrive
				continue
			}
			if len(out) == maxChangedAreas {
				return nil, fmt.Errorf("QueryChangedDiskAreas of disk %s: more than %d separate changed areas; the list is not kept in memory (a CBT reset makes the next backup read the disk whole)", disk.Name, maxChangedAreas)
			}
			out = append(out, Extent{Offset: a.Start, Length: a.Length})
		}
		next := info.StartOffset + info.Length
		if next <= off {
			return nil, fmt.Errorf("QueryChangedDiskAreas of disk %s at offset %d made no progress (answered %d+%d)", disk.Name, off, info.StartOffset, info.Length)
		}
		off = next
	}
	return out, nil
}

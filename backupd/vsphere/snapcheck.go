package vsphere

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// NotSnapshotableError means a VM cannot be snapshotted for a backup, for
// a cause vSphere knows (Fault Tolerance, encryption without the
// privileges, an inaccessible datastore, an orphaned VM, a migration in
// progress). Fix says what an administrator does about it. A Permanent
// cause (retrying does not help) is also ErrNotBackupable.
type NotSnapshotableError struct {
	VM        string
	Cause     string
	Fix       string
	Permanent bool
	Err       error // the vSphere fault, when a snapshot was tried
}

func (e *NotSnapshotableError) Error() string {
	s := fmt.Sprintf("VM %s cannot be snapshotted for a backup: %s", e.VM, e.Cause)
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	if e.Fix != "" {
		s += ": " + e.Fix
	}
	return s
}

// Unwrap gives the vSphere fault.
func (e *NotSnapshotableError) Unwrap() error { return e.Err }

// Is makes a permanent cause ErrNotBackupable.
func (e *NotSnapshotableError) Is(target error) bool {
	return target == ErrNotBackupable && e.Permanent
}

var snapCheckProps = []string{"name", "runtime.connectionState", "config.ftInfo", "config.keyId", "config.hardware.device", "runtime.host", "recentTask"}

// migrationTasks are the descriptionIds of the tasks that move a VM: a
// vMotion or Storage vMotion started by a user or by DRS.
var migrationTasks = map[string]bool{
	"VirtualMachine.migrate":  true,
	"VirtualMachine.relocate": true,
	"Drm.ExecuteVMotionLRO":   true,
}

// CheckSnapshotable refuses, before a snapshot is tried, a VM that vSphere
// will not snapshot or whose snapshot cannot be read: one that is
// orphaned, inaccessible or disconnected, the secondary of a Fault
// Tolerance pair, or one with a disk on a datastore that is not
// accessible.
func (v *VM) CheckSnapshotable(ctx context.Context) error {
	var m mo.VirtualMachine
	if err := property.DefaultCollector(v.conn.Client).RetrieveOne(ctx, v.Ref, snapCheckProps, &m); err != nil {
		return fmt.Errorf("read VM %s: %w", v.Name, err)
	}
	if err := connectionStateError(v.Name, m.Runtime.ConnectionState); err != nil {
		return err
	}
	if m.Config != nil && m.Config.FtInfo != nil {
		if ft := m.Config.FtInfo.GetFaultToleranceConfigInfo(); ft != nil && ft.Role != 1 {
			return &NotSnapshotableError{VM: v.Name, Permanent: true,
				Cause: fmt.Sprintf("it is the secondary VM (role %d) of a Fault Tolerance pair", ft.Role),
				Fix:   "back up the primary VM of the pair instead (vSphere takes backup snapshots of the primary only)"}
		}
	}
	if err := v.checkMigration(ctx, m.RecentTask); err != nil {
		return err
	}
	if m.Config == nil {
		return nil
	}
	return v.checkDatastores(ctx, DisksOf(m.Config.Hardware.Device))
}

// checkMigration refuses a VM that a running task is migrating.
func (v *VM) checkMigration(ctx context.Context, recent []types.ManagedObjectReference) error {
	if len(recent) == 0 {
		return nil
	}
	var tasks []mo.Task
	if err := property.DefaultCollector(v.conn.Client).Retrieve(ctx, recent, []string{"info"}, &tasks); err != nil {
		// tasks end and vanish between the two reads: no answer is no migration
		return nil
	}
	for _, t := range tasks {
		st := t.Info.State
		if migrationTasks[t.Info.DescriptionId] && (st == types.TaskInfoStateRunning || st == types.TaskInfoStateQueued) {
			return &NotSnapshotableError{VM: v.Name,
				Cause: fmt.Sprintf("it is being migrated (vMotion or Storage vMotion: task %s %s is %s)", t.Info.Key, t.Info.Name, st),
				Fix:   "retry when the migration has ended"}
		}
	}
	return nil
}

// connectionStateError explains a runtime.connectionState other than
// connected.
func connectionStateError(vm string, st types.VirtualMachineConnectionState) error {
	switch st {
	case "", types.VirtualMachineConnectionStateConnected:
		return nil
	case types.VirtualMachineConnectionStateOrphaned:
		return &NotSnapshotableError{VM: vm, Permanent: true, Cause: "vCenter lists it as orphaned (its host no longer knows it)",
			Fix: "remove it from the inventory and register its .vmx again (or back up the VM that replaced it)"}
	case types.VirtualMachineConnectionStateInaccessible:
		return &NotSnapshotableError{VM: vm, Cause: "it is inaccessible (its files' datastore cannot be reached)",
			Fix: "bring the datastore back to the host (storage paths, NFS mount), then retry"}
	case types.VirtualMachineConnectionStateInvalid:
		return &NotSnapshotableError{VM: vm, Permanent: true, Cause: "its configuration is invalid",
			Fix: "repair or re-register its .vmx in vSphere"}
	case types.VirtualMachineConnectionStateDisconnected:
		return &NotSnapshotableError{VM: vm, Cause: "its host is disconnected from vCenter",
			Fix: "reconnect the host to vCenter, then retry"}
	}
	return &NotSnapshotableError{VM: vm, Cause: fmt.Sprintf("its connection state is %q", st), Fix: "make it connected, then retry"}
}

// checkDatastores refuses disks whose datastore is not accessible.
func (v *VM) checkDatastores(ctx context.Context, disks []Disk) error {
	seen := map[string][]string{}
	var refs []types.ManagedObjectReference
	for _, d := range disks {
		if d.Datastore == "" {
			continue
		}
		if _, ok := seen[d.Datastore]; !ok {
			refs = append(refs, types.ManagedObjectReference{Type: "Datastore", Value: d.Datastore})
		}
		seen[d.Datastore] = append(seen[d.Datastore], d.Name)
	}
	if len(refs) == 0 {
		return nil
	}
	var dss []mo.Datastore
	if err := property.DefaultCollector(v.conn.Client).Retrieve(ctx, refs, []string{"name", "summary.accessible"}, &dss); err != nil {
		return fmt.Errorf("read the datastores of VM %s: %w", v.Name, err)
	}
	for _, ds := range dss {
		if ds.Summary.Accessible {
			continue
		}
		return &NotSnapshotableError{VM: v.Name,
			Cause: fmt.Sprintf("datastore %s of disk %s is not accessible", ds.Name, strings.Join(seen[ds.Self.Value], ", ")),
			Fix:   "restore the host's access to the datastore (storage paths, NFS mount, a lost LUN) and retry; or exclude the disk (--exclude-disk, exclude_disks:) to back up the others"}
	}
	return nil
}

// explainSnapshotFault turns a failed snapshot of a VM into a
// NotSnapshotableError when the fault has a known cause, else returns
// nil. ft and encrypted describe the VM.
func explainSnapshotFault(vm string, err error, ft, encrypted bool) error {
	switch {
	case fault.Is(err, &types.NoPermission{}) && encrypted:
		return &NotSnapshotableError{VM: vm, Err: err, Permanent: true, Cause: "it is encrypted and the backup user lacks the cryptographic privileges",
			Fix: "give the backup user's role Cryptographic operations > Direct Access, Decrypt and Manage keys (or back it up as a user with them)"}
	case ft:
		return &NotSnapshotableError{VM: vm, Err: err, Permanent: true, Cause: "Fault Tolerance is on",
			Fix: "vSphere 6.0 and later take backup snapshots of FT primaries (legacy FT cannot): upgrade the FT VM, or turn Fault Tolerance off for the backup"}
	case fault.Is(err, &types.TaskInProgress{}) || fault.Is(err, &types.InvalidState{}) || fault.Is(err, &types.MigrationFault{}):
		return &NotSnapshotableError{VM: vm, Err: err, Cause: "it is busy (a vMotion, Storage vMotion, another snapshot or a reconfiguration is in progress)",
			Fix: "retry when the operation has ended"}
	case fault.Is(err, &types.FileNotFound{}) || fault.Is(err, &types.InaccessibleDatastore{}):
		return &NotSnapshotableError{VM: vm, Err: err, Cause: "a file of the VM or its disks cannot be reached",
			Fix: "check that every datastore of the VM is accessible from its host, then retry"}
	}
	return nil
}

// snapshotFacts reads whether the VM has Fault Tolerance or encryption, to
// explain a snapshot fault.
func (v *VM) snapshotFacts(ctx context.Context) (ft, encrypted bool) {
	var m mo.VirtualMachine
	if err := property.DefaultCollector(v.conn.Client).RetrieveOne(ctx, v.Ref, []string{"config.ftInfo", "config.keyId"}, &m); err != nil || m.Config == nil {
		return false, false
	}
	return m.Config.FtInfo != nil, m.Config.KeyId != nil
}

// IsNotSnapshotable reports whether err is a NotSnapshotableError.
func IsNotSnapshotable(err error) bool {
	var ns *NotSnapshotableError
	return errors.As(err, &ns)
}

// checkedSnapshot checks that the VM can be snapshotted
// (CheckSnapshotable), takes the snapshot and turns a fault with a known
// cause into a NotSnapshotableError; a quiesce fault comes back as it is.
func (v *VM) checkedSnapshot(ctx context.Context, name string, quiesce bool) (types.ManagedObjectReference, error) {
	if err := v.CheckSnapshotable(ctx); err != nil {
		return types.ManagedObjectReference{}, err
	}
	ref, err := v.createSnapshot(ctx, name, quiesce)
	if err == nil || ctx.Err() != nil || (quiesce && isQuiesceFault(err)) {
		return ref, err
	}
	ft, encrypted := v.snapshotFacts(ctx)
	if xerr := explainSnapshotFault(v.Name, err, ft, encrypted); xerr != nil {
		return ref, xerr
	}
	return ref, err
}

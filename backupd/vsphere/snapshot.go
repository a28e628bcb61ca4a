package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// SnapshotPrefix starts the name of every snapshot cairn takes; snapshots
// with this prefix left by a killed run are removed at the next start.
const SnapshotPrefix = "cairn-"

// Quiesce modes of a backup snapshot.
const (
	QuiesceAuto    = "auto"    // quiesce; on a quiesce fault retry crash-consistent
	QuiesceRequire = "require" // quiesce or fail
	QuiesceOff     = "off"     // crash-consistent
)

// Consistency labels (the same strings as blockmap's).
const (
	ConsistencyQuiesced = "quiesced"
	ConsistencyCrash    = "crash-consistent"
)

// ParseQuiesce checks a quiesce mode ("" means auto).
func ParseQuiesce(s string) (string, error) {
	switch s {
	case "", QuiesceAuto:
		return QuiesceAuto, nil
	case QuiesceRequire, QuiesceOff:
		return s, nil
	}
	return "", fmt.Errorf("quiesce mode %q: use auto, require or off", s)
}

// Snapshot is a backup snapshot and the frozen disks it holds.
type Snapshot struct {
	Ref         types.ManagedObjectReference
	Name        string
	Consistency string
	// QuiesceError is the quiesce fault that made an auto snapshot
	// crash-consistent ("" otherwise).
	QuiesceError string
	Time         time.Time
	Disks        []Disk
}

// Disk returns the snapshot's disk with the given device key.
func (s *Snapshot) Disk(key int32) (Disk, bool) {
	for _, d := range s.Disks {
		if d.Key == key {
			return d, true
		}
	}
	return Disk{}, false
}

// CreateSnapshot takes a snapshot without memory, quiesced according to
// mode (SnapshotWithMode), and reads the frozen disks from the snapshot's
// own configuration.
func (v *VM) CreateSnapshot(ctx context.Context, name, mode string) (*Snapshot, error) {
	return SnapshotWithMode(ctx, v.Name, mode, v.conn.log, func(ctx context.Context, quiesce bool) (*Snapshot, error) {
		return v.TakeSnapshot(ctx, name, quiesce)
	})
}

// QuiesceFaultError means a quiesced snapshot failed because the guest
// could not be quiesced (VMware Tools missing or a quiesce fault); a
// crash-consistent snapshot may still work.
type QuiesceFaultError struct {
	VM  string
	Err error
}

func (e *QuiesceFaultError) Error() string {
	return fmt.Sprintf("snapshot VM %s: %v", e.VM, e.Err)
}

func (e *QuiesceFaultError) Unwrap() error { return e.Err }

// SnapshotWithMode applies a quiesce mode to take, one attempt at a
// snapshot: auto quiesces and on a *QuiesceFaultError takes a
// crash-consistent snapshot instead (recording the fault); require fails
// on the fault; off never quiesces. A hypervisor gives take; the policy
// is the same for all.
func SnapshotWithMode(ctx context.Context, vmName, mode string, log *slog.Logger, take func(ctx context.Context, quiesce bool) (*Snapshot, error)) (*Snapshot, error) {
	mode, err := ParseQuiesce(mode)
	if err != nil {
		return nil, err
	}
	quiesce := mode != QuiesceOff
	snap, err := take(ctx, quiesce)
	var qf *QuiesceFaultError
	if err != nil && quiesce && errors.As(err, &qf) {
		if mode == QuiesceRequire {
			return nil, fmt.Errorf("quiesced snapshot of VM %s failed and quiescing is required: %w", vmName, qf.Err)
		}
		if log == nil {
			log = slog.Default()
		}
		log.Warn("quiescing failed; taking a crash-consistent snapshot instead", "vm", vmName, "error", qf.Err)
		snap, err = take(ctx, false)
		if snap != nil {
			snap.QuiesceError = qf.Err.Error()
		}
	}
	return snap, err
}

// TakeSnapshot makes one attempt at a snapshot without memory, quiesced
// or not, and reads the frozen disks from the snapshot's own
// configuration. A quiesce fault is a *QuiesceFaultError. When the
// snapshot was made but cannot be read, it is returned with the error, so
// that the caller removes it.
func (v *VM) TakeSnapshot(ctx context.Context, name string, quiesce bool) (*Snapshot, error) {
	snap := &Snapshot{Name: name, Consistency: ConsistencyQuiesced}
	if !quiesce {
		snap.Consistency = ConsistencyCrash
	}
	ref, err := v.checkedSnapshot(ctx, name, quiesce)
	if err != nil {
		if quiesce && isQuiesceFault(err) {
			return nil, &QuiesceFaultError{VM: v.Name, Err: err}
		}
		if IsNotSnapshotable(err) {
			return nil, err
		}
		return nil, fmt.Errorf("snapshot VM %s: %w", v.Name, err)
	}
	snap.Ref = ref
	var m mo.VirtualMachineSnapshot
	if err := property.DefaultCollector(v.conn.Client).RetrieveOne(ctx, ref, []string{"config"}, &m); err != nil {
		return snap, fmt.Errorf("read snapshot %s of VM %s: %w", name, v.Name, err)
	}
	snap.Disks = DisksOf(m.Config.Hardware.Device)
	snap.Time = time.Now().UTC()
	return snap, nil
}

func (v *VM) createSnapshot(ctx context.Context, name string, quiesce bool) (types.ManagedObjectReference, error) {
	task, err := v.Object().CreateSnapshot(ctx, name, snapshotDescription, false, quiesce)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	if info == nil {
		// The wait ended without the task's end (the job was cancelled
		// and its session closed): govmomi then gives no info and no error.
		if err := ctx.Err(); err != nil {
			return types.ManagedObjectReference{}, fmt.Errorf("snapshot task: %w", err)
		}
		return types.ManagedObjectReference{}, errors.New("snapshot task: the vCenter ended the wait without the task's result")
	}
	ref, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return ref, errors.New("snapshot task returned no snapshot")
	}
	return ref, nil
}

func isQuiesceFault(err error) bool {
	return fault.Is(err, &types.ApplicationQuiesceFault{}) ||
		fault.Is(err, &types.ToolsUnavailable{}) ||
		strings.Contains(strings.ToLower(err.Error()), "quiesc")
}

// RemoveSnapshot removes one snapshot (consolidating its disks). It uses
// its own context so that it also runs after the job's was cancelled.
func (v *VM) RemoveSnapshot(ref types.ManagedObjectReference) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	req := types.RemoveSnapshot_Task{This: ref, RemoveChildren: false}
	task, err := removeSnapshotTask(ctx, v.conn, req)
	if err != nil {
		return fmt.Errorf("remove snapshot %s of VM %s: %w", ref.Value, v.Name, err)
	}
	if _, err := task.WaitForResult(ctx); err != nil {
		return fmt.Errorf("remove snapshot %s of VM %s: %w", ref.Value, v.Name, err)
	}
	return nil
}

// snapshotDescription is the description of every snapshot cairn takes.
const snapshotDescription = "taken by cairn for a backup; removed when it ends"

// cairnSnapshotName matches the names cairn gives its snapshots:
// cairn-<job id> and cairn-cbt-enable.
var cairnSnapshotName = regexp.MustCompile(`^cairn-(cbt-enable|[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6})$`)

// IsCairnSnapshot reports whether a snapshot is one cairn took: its name
// starts with SnapshotPrefix and either carries cairn's description or is
// a name cairn gives (cairn-<job id>, cairn-cbt-enable). A user's own
// snapshot that merely starts with "cairn-" ("cairn-before-upgrade",
// with its own description) is not.
func IsCairnSnapshot(name, description string) bool {
	if !strings.HasPrefix(name, SnapshotPrefix) {
		return false
	}
	return description == snapshotDescription || cairnSnapshotName.MatchString(name)
}

// RemoveStaleSnapshots removes every snapshot cairn took
// (IsCairnSnapshot) that is still there: left behind by a run that was
// killed. Snapshots the VM's users made are never touched. It returns
// their names.
func (v *VM) RemoveStaleSnapshots(ctx context.Context) ([]string, error) {
	fresh, err := v.conn.LoadVM(ctx, v.Ref)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, s := range fresh.Snapshots {
		if !IsCairnSnapshot(s.Name, s.Description) {
			continue
		}
		v.conn.log.Warn("removing a snapshot left by an interrupted cairn run", "vm", v.Name, "snapshot", s.Name)
		if err := v.RemoveSnapshot(s.Ref); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, s.Name)
	}
	v.Snapshots = nil
	return removed, errors.Join(errs...)
}

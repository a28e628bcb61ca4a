package backupd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// JobRestore is the kind of restore jobs in the job log.
const JobRestore = "restore"

// Write transports.
const (
	WriteTransportNBD    = "nbd"
	WriteTransportHotAdd = "hotadd"
)

// DefaultRestoreNBDCommand writes a disk with nbdkit's VDDK plugin (the
// production default; needs VMware's VDDK library on the appliance). It is
// DefaultNBDCommand without --readonly and without a snapshot.
const DefaultRestoreNBDCommand = "nbdkit -t 1 -U {socket} -f vddk server={server} user={user} password=+{password_file} thumbprint={thumbprint} vm=moref={vm_moref} file={disk_file}"

// DefaultRestoreWorkers is how many pieces of a disk a restore reads and
// writes at once.
const DefaultRestoreWorkers = 8

// FailedRestoreSuffix is appended to the name of a VM a failed restore
// could not remove.
const FailedRestoreSuffix = "-failed-restore"

// Errors of restores, for the CLI's advice.
var (
	// ErrNoVMConfig means the point carries no VM configuration (an
	// imported disk): give one with RestoreRequest.Config.
	ErrNoVMConfig = errors.New("the point has no VM configuration")
	// ErrCBTCannotAnswer means a quick rollback cannot learn what changed
	// since the point (another CBT epoch, a resized disk, CBT off); a full
	// overwrite (RestoreRequest.Full) is needed: the CLI and the API say
	// how to ask for one.
	ErrCBTCannotAnswer = errors.New("changed block tracking cannot say what changed since the point")
	// ErrNotPoweredOff means an in-place restore found the VM running.
	ErrNotPoweredOff = errors.New("the VM is powered on")
	// ErrNBDReadOnly means a restore's NBD server refuses writes (started
	// read-only); the CLI names the flag of the NBD command to drop.
	ErrNBDReadOnly = errors.New("the NBD server is read-only")
)

// ErrNoProxyVM means hotadd was asked for without the appliance's own VM,
// to which hotadd attaches the disks (backups and restores alike); the CLI
// and the API say how to name it.
var ErrNoProxyVM = errors.New("hotadd needs the appliance's own VM (the proxy VM) to attach disks to")

// RestoreOptions tune restores.
type RestoreOptions struct {
	// Transports are tried in order for each disk (default "nbd").
	Transports []string
	// NBDCommand is the NBD server command template for the target disk
	// (default DefaultRestoreNBDCommand), with the placeholders of backups
	// minus {snapshot_moref}; {disk_local_path} is the new disk's flat file.
	NBDCommand      string
	NBD             nbd.Options
	NBDStartTimeout time.Duration
	DatastoreDirs   vsphere.DatastoreDirs
	Credentials     vsphere.Credentials
	Thumbprint      string
	// ProxyVM is the appliance's own VM, for the hotadd write transport;
	// HotAddDevice finds the local device of a disk attached to it
	// (default DeviceByUUID).
	ProxyVM      string
	HotAddDevice HotAddDeviceFunc
	// ChunkSize is the size of each read from the repository and write
	// to the target (default 4 MiB).
	ChunkSize int
	// Workers is how many chunks are read and written at once per disk
	// (default DefaultRestoreWorkers).
	Workers int
	// Progress, when set, is called once per disk; add counts bytes
	// written and finish is called when the disk is done.
	Progress func(vm, disk string, total int64) (add func(int64), finish func())
	Logger   *slog.Logger
	// Source, when set, is where the point's disks and VM configuration
	// are read (an offsite remote); the repository still keeps the job log.
	Source PointSource
}

// RestoreRequest says what to restore where.
type RestoreRequest struct {
	Point blockmap.Point
	// Config overrides the point's recorded configuration (required for
	// points without one).
	Config *vmconfig.Config
	// Create places a new VM (Name, Host, Cluster, Datastore, Folder,
	// Networks, Provisioning, KeepIdentity; Config and JobID are filled in).
	Create vsphere.CreateSpec
	// Replace lets a restore overwrite an existing VM of the target name in
	// place (it is powered off first); without it such a VM is never
	// touched.
	Replace bool
	// InPlace rolls the VM named Create.Name back to the point, writing
	// only what CBT says changed since; with Full it overwrites every disk.
	InPlace bool
	Full    bool
	// PowerOn powers the VM on after a successful restore.
	PowerOn bool
	// VCenter is recorded in the job log.
	VCenter string
}

// RestoreDiskResult is what a restore did for one disk.
type RestoreDiskResult struct {
	Name      string `json:"name"`
	Target    string `json:"target"`
	Transport string `json:"transport"`
	// BytesWritten are data bytes sent to the target; ZeroBytes the
	// ranges made zero (write-zeroes requests, no data sent).
	BytesWritten int64 `json:"bytes_written"`
	ZeroBytes    int64 `json:"zero_bytes"`
	// StreamBytes is the length of the streamOptimized VMDK sent (nfc).
	StreamBytes int64 `json:"stream_bytes,omitempty"`
	// ChangedBytes is what CBT reported for a quick rollback.
	ChangedBytes int64 `json:"changed_bytes,omitempty"`
	Retries      int64 `json:"retries,omitempty"`
}

// RestoreResult is the outcome of a successful restore.
type RestoreResult struct {
	JobID string              `json:"job_id"`
	VM    string              `json:"vm"`
	MoRef string              `json:"moref"`
	Point string              `json:"point"`
	Mode  string              `json:"mode"` // new, replace, rollback, full
	Disks []RestoreDiskResult `json:"disks"`
	// BytesRead are the bytes read from the point (its data in what was
	// written; for nfc also the zero grains, which are read, not sent).
	BytesRead int64 `json:"bytes_read"`
	// Placement says where a new VM went (mode "new" only) and which
	// recorded items no longer existed.
	Placement *vsphere.Placed `json:"placement,omitempty"`
	// Warnings say what the restored VM lacks: disks created empty
	// because the point holds no data of them (independent, RDM or
	// excluded at backup time).
	Warnings []string `json:"warnings,omitempty"`
	Reused   bool     `json:"-"`
}

// BytesWritten sums the disks' data bytes sent.
func (r *RestoreResult) BytesWritten() (n int64) {
	for _, d := range r.Disks {
		n += d.BytesWritten
	}
	return n
}

// RestoreError is a failed restore; LeftVM names a VM that could not be
// removed and was renamed instead ("" when nothing was left), PoweredOff
// a VM the restore powered off to overwrite it (Replace) and left off,
// Removed the new VM the restore created and removed again.
type RestoreError struct {
	Err        error
	LeftVM     string
	PoweredOff string
	Removed    string
}

func (e *RestoreError) Error() string {
	msg := e.Err.Error()
	if e.Removed != "" {
		msg = fmt.Sprintf("%s (the new VM %s was removed again)", msg, e.Removed)
	}
	if e.LeftVM != "" {
		msg = fmt.Sprintf("%s (the half-restored VM could not be removed: it is renamed %q; delete it in vSphere)", msg, e.LeftVM)
	}
	if e.PoweredOff != "" {
		msg = fmt.Sprintf("%s (VM %s was powered off to be replaced and stays off: its disks may be partly overwritten)", msg, e.PoweredOff)
	}
	return msg
}

func (e *RestoreError) Unwrap() error { return e.Err }

// PointVMConfig reads a point's recorded VM configuration.
func PointVMConfig(ctx context.Context, repo *blockmap.Repo, p blockmap.Point) (*vmconfig.Config, error) {
	return sourceVMConfig(ctx, repo, p)
}

// record writes the running record of the job to the repository's job
// log and returns the function that writes its final record.
func (j *restoreJob) record(p blockmap.Point, vcenter string) func(*RestoreResult, error) {
	rec := JobRecord{ID: j.id, Kind: JobRestore, VM: p.VM, VCenter: vcenter, Start: time.Now().UTC(), State: JobRunning, Point: p.ID}
	jobs := NewJobLog(j.repo.Dir())
	if err := jobs.Append(rec); err != nil {
		j.log.Warn("job log", "err", err)
	}
	return func(res *RestoreResult, err error) {
		rec.End, rec.State = time.Now().UTC(), EndState(err)
		rec.BytesRead = j.read.Load()
		if res != nil {
			res.BytesRead = rec.BytesRead
			rec.BytesWritten, rec.Target = res.BytesWritten(), res.VM
		}
		if err != nil {
			rec.Error = err.Error()
		}
		if aerr := jobs.Append(rec); aerr != nil {
			j.log.Warn("job log", "err", aerr)
		}
	}
}

// restoreJob is one running restore.
type restoreJob struct {
	// emptyDisks are disks of the configuration the point holds no data
	// of (vmconfig.Disk.NotBackedUp): created empty (restore_empty.go).
	emptyDisks []vmconfig.Disk
	id         string
	repo       *blockmap.Repo
	hv         RestoreHypervisor
	opts       RestoreOptions
	log        *slog.Logger
	dirs       vsphere.DatastoreDirs
	vm         *vsphere.VM
	// transports are the write transports, built at the first disk.
	transports []WriteTransport
	// pre is a write target opened ahead of its disk's turn (prestart).
	pre *prestarted
	// read counts the bytes read from the point (the job's bytes_read).
	read atomic.Int64
	// start is when the restore began (for the debug log's phase times).
	start time.Time
	// staleDone, when set, is closed when the scan for VMs of
	// interrupted restores running beside an in-place restore is done.
	staleDone chan struct{}
}

// phase logs at debug level how long after its start the restore reached
// a step (where a quick rollback's time goes).
func (j *restoreJob) phase(step string, args ...any) {
	j.log.Debug("restore phase", append([]any{"step", step, "at", time.Since(j.start)}, args...)...)
}

// newRestoreJob fills in the options' defaults.
func newRestoreJob(repo *blockmap.Repo, hv RestoreHypervisor, opts RestoreOptions) *restoreJob {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if len(opts.Transports) == 0 {
		opts.Transports = []string{WriteTransportNBD}
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 4 << 20
	}
	j := &restoreJob{id: NewJobID(), repo: repo, hv: hv, opts: opts, start: time.Now()}
	j.log = opts.Logger.With("job", j.id)
	return j
}

// Restore brings a point back to vSphere: as a new VM (default), over an
// existing VM of the same name (Replace: every disk overwritten), or as a
// quick rollback of the original VM (InPlace). It records a job in the
// repository's job log. A new VM that fails or is cancelled half-way is
// destroyed, or renamed with FailedRestoreSuffix when that fails too.
//
// hv is the platform (NewVSphere of a connection); the restore talks to
// it only.
func Restore(ctx context.Context, repo *blockmap.Repo, hv RestoreHypervisor, req RestoreRequest, opts RestoreOptions) (res *RestoreResult, err error) {
	j := newRestoreJob(repo, hv, opts)
	opts = j.opts
	name := req.Create.Name
	finish := j.record(req.Point, req.VCenter)
	defer func() {
		finish(res, Cancelled(ctx, err))
		j.phase("done")
	}()
	j.phase("job recorded")
	if req.InPlace {
		// The scan for VMs of interrupted restores (a container view:
		// 25-80 ms in a new process) runs beside the VM's lookup and its
		// NBD server's start, which write nothing; it ends before CBT is
		// asked and anything is written.
		stale := make(chan struct{})
		go func() {
			defer close(stale)
			j.cleanupStale(ctx)
		}()
		defer func() { <-stale }()
		j.staleDone = stale
		return j.inPlace(ctx, req, name, !req.Full)
	}
	if err := req.Create.CheckPlacement(); err != nil {
		return nil, err
	}
	j.cleanupStale(ctx)
	j.phase("stale restores checked")
	cfg := req.Config
	if cfg == nil {
		var src attachmentReader = repo
		if opts.Source != nil {
			src = opts.Source
		}
		if cfg, err = sourceVMConfig(ctx, src, req.Point); err != nil {
			return nil, err
		}
	}
	if name == "" {
		name = cfg.Name
	}
	if err := checkNetworkMap(cfg, req.Create.Networks); err != nil {
		return nil, err
	}
	var warnings []string
	for _, d := range cfg.Disks {
		pd, ok := req.Point.Disk(d.Name)
		if !ok && d.NotBackedUp != "" {
			warnings = append(warnings, notBackedUpWarning(d))
			j.emptyDisks = append(j.emptyDisks, d)
			continue
		}
		if !ok {
			return nil, fmt.Errorf("disk %s of the VM configuration is not in point %s (points hold %s)", d.Name, req.Point.ID, diskNames(req.Point))
		}
		if d.Capacity < pd.Size {
			// every transport would fail on it, the last one with its own
			// unrelated complaint: say it before anything is created
			return nil, fmt.Errorf("disk %s of the VM configuration holds %d bytes, less than the point's %d: give a configuration whose disk is at least as large", d.Name, d.Capacity, pd.Size)
		}
	}
	if existing, err := hv.LookupVM(ctx, name); err == nil {
		if !req.Replace {
			// the CLI and the API add their advice (a new name, or replace)
			return nil, fmt.Errorf("VM %q: %w", name, vsphere.ErrVMExists)
		}
		req.Create.Name = name
		r, err := j.overwrite(ctx, req, existing, false)
		if r != nil {
			r.Mode = "replace"
		}
		return r, err
	} else if !errors.Is(err, vsphere.ErrVMNotFound) {
		return nil, err
	}
	spec := req.Create
	spec.Config, spec.Name, spec.JobID = cfg, name, j.id
	var (
		created  *vsphere.CreatedVM
		imported []RestoreDiskResult
	)
	if opts.Transports[0] == WriteTransportNFC {
		created, imported, err = j.importVM(ctx, req.Point, spec)
		if err != nil {
			// where the VM goes is wrong whatever writes its disks: stop
			if ctx.Err() != nil || len(opts.Transports) == 1 || errors.Is(err, vsphere.ErrPlacement) || errors.Is(err, vsphere.ErrVMExists) ||
				vsphere.IsNoDiskSpace(err) {
				return nil, err
			}
			j.log.Warn("write transport failed, trying the next", "transport", WriteTransportNFC, "err", err)
			j.opts.Transports = opts.Transports[1:]
		}
	}
	if created == nil {
		if created, err = hv.CreateVM(ctx, spec); err != nil {
			return nil, err
		}
	}
	j.log.Info("VM created for restore", "vm", name, "moref", created.Ref.Value, "datastore", created.Datastore,
		"folder", created.Placed.Folder, "resource_pool", created.Placed.ResourcePool, "host", created.Placed.Host)
	for _, f := range created.Placed.Fallbacks {
		j.log.Warn("recorded placement not used", "vm", name, "fallback", f)
	}
	defer func() {
		if err == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if derr := hv.DestroyVM(cctx, created.VM); derr != nil {
			left := name + FailedRestoreSuffix
			j.log.Error("removing the half-restored VM failed; renaming it", "vm", name, "err", derr, "renamed", left)
			if rerr := hv.RenameVM(cctx, created.VM, left); rerr != nil {
				left = name
			}
			err = &RestoreError{Err: err, LeftVM: left}
			return
		}
		j.log.Info("half-restored VM removed", "vm", name)
		err = &RestoreError{Err: err, Removed: name}
	}()
	j.vm = created.VM
	placed := created.Placed
	res = &RestoreResult{JobID: j.id, VM: name, MoRef: created.Ref.Value, Point: req.Point.ID, Mode: "new", Placement: &placed, Warnings: warnings}
	for _, w := range warnings {
		j.log.Warn(w, "vm", name)
	}
	res.Disks = imported
	for _, cd := range created.Disks {
		if imported != nil {
			break // written during the import
		}
		if _, ok := req.Point.Disk(cd.Name); !ok && j.isEmptyDisk(cd.Name) {
			continue // created empty: the point holds no data of it
		}
		dr, err := j.writeDisk(ctx, req.Point, cd.Name, cd.Disk, nil, false)
		if err != nil {
			return nil, err
		}
		res.Disks = append(res.Disks, dr)
	}
	note := cfg.Annotation
	if note == "" {
		// vSphere keeps an annotation that a reconfiguration sets to ""
		// (the field is then left out): say where the VM came from instead
		// of leaving the in-progress line.
		note = fmt.Sprintf("restored by cairn from %s point %s", req.Point.VM, req.Point.ID)
	}
	if err := hv.FinishRestore(ctx, created.VM, note); err != nil {
		return nil, err
	}
	if req.PowerOn {
		if err := hv.PowerOn(ctx, created.VM); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func diskNames(p blockmap.Point) string {
	var n []string
	for _, d := range p.Disks {
		n = append(n, d.Name)
	}
	return strings.Join(n, ", ")
}

// inPlace writes the point over the disks of an existing VM: only the
// areas CBT reports changed since the point (quick), or everything.
func (j *restoreJob) inPlace(ctx context.Context, req RestoreRequest, name string, quick bool) (*RestoreResult, error) {
	if name == "" {
		name = req.Point.VM
	}
	vm, err := j.hv.LookupVM(ctx, name)
	if err != nil {
		return nil, err
	}
	j.phase("VM looked up")
	return j.overwrite(ctx, req, vm, quick)
}

// overwrite writes the point over the disks of vm (inPlace); with
// req.Replace it powers the VM off first, and a failure after that is a
// RestoreError saying the VM stays off. (An in-place rollback never
// powers a VM off: it refuses a running one.)
func (j *restoreJob) overwrite(ctx context.Context, req RestoreRequest, vm *vsphere.VM, quick bool) (_ *RestoreResult, err error) {
	name := vm.Name
	if req.Replace {
		if err := j.hv.PowerOff(ctx, vm); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				err = &RestoreError{Err: err, PoweredOff: name}
			}
		}()
	}
	off, err := j.hv.PoweredOff(ctx, vm)
	if err != nil {
		return nil, err
	}
	if !off {
		return nil, fmt.Errorf("VM %s: %w: power it off first (an in-place restore overwrites its disks)", name, ErrNotPoweredOff)
	}
	j.phase("power state read")
	j.vm = vm
	ref := vm.Ref
	mode := "full"
	if quick {
		mode = "rollback"
	}
	res := &RestoreResult{JobID: j.id, VM: name, MoRef: ref.Value, Point: req.Point.ID, Mode: mode}
	targets := map[string]vsphere.Disk{}
	for _, d := range vm.Disks {
		targets[d.Name] = d
	}
	type plan struct {
		pd    blockmap.DiskInfo
		td    vsphere.Disk
		areas []blockmap.Extent
		cbt   int64
	}
	var plans []plan
	if quick {
		// The NBD server of the first disk starts while CBT is asked:
		// starting it writes nothing, and it is most of a quick
		// rollback's fixed cost. A rollback CBT cannot answer stops it.
		j.prestart(ctx, req.Point, targets)
		defer j.discardPrestart()
	}
	if j.staleDone != nil {
		<-j.staleDone
		j.phase("stale restores checked")
	}
	// Ask CBT for every disk before writing anything: a rollback either
	// can be done quickly for the whole VM or says so before any change.
	for _, pd := range req.Point.Disks {
		td, ok := targets[pd.Name]
		if !ok {
			return nil, fmt.Errorf("VM %s has no disk %s (it has %d disks): the point's disks must all exist", name, pd.Name, len(vm.Disks))
		}
		if td.Capacity != pd.Size {
			if quick {
				return nil, fmt.Errorf("disk %s of %s has %d bytes, the point %d: %w", pd.Name, name, td.Capacity, pd.Size, ErrCBTCannotAnswer)
			}
			if td.Capacity < pd.Size {
				return nil, fmt.Errorf("disk %s of %s has %d bytes, smaller than the point's %d: grow it first", pd.Name, name, td.Capacity, pd.Size)
			}
		}
		p := plan{pd: pd, td: td}
		if quick {
			meta, _ := ReadDiskMeta(pd)
			if meta.ChangeID == "" {
				return nil, fmt.Errorf("disk %s: the point recorded no CBT changeId: %w", pd.Name, ErrCBTCannotAnswer)
			}
			areas, err := j.hv.ChangedAreasOfBase(ctx, vm, td, meta.ChangeID)
			if err != nil {
				var rej *vsphere.ChangeIDRejectedError
				if errors.As(err, &rej) {
					return nil, fmt.Errorf("disk %s: %v: %w", pd.Name, err, ErrCBTCannotAnswer)
				}
				return nil, err
			}
			for _, a := range areas {
				p.areas = append(p.areas, blockmap.Extent{Offset: a.Offset, Length: a.Length})
				p.cbt += a.Length
			}
			j.phase("CBT answered", "disk", pd.Name, "areas", len(areas), "bytes", p.cbt)
		} else {
			p.areas = []blockmap.Extent{{Offset: 0, Length: pd.Size}}
		}
		plans = append(plans, p)
	}
	for _, p := range plans {
		if quick && len(p.areas) == 0 {
			// nothing changed since the point: no write path to open (and
			// nil areas would mean a whole new disk to writeDisk)
			if j.pre != nil && j.pre.disk == p.td.Name {
				j.discardPrestart()
			}
			res.Disks = append(res.Disks, RestoreDiskResult{Name: p.pd.Name, Target: p.td.Name})
			continue
		}
		dr, err := j.writeDisk(ctx, req.Point, p.pd.Name, p.td, p.areas, true)
		if err != nil {
			return nil, err
		}
		dr.ChangedBytes = p.cbt
		res.Disks = append(res.Disks, dr)
	}
	if req.PowerOn {
		if err := j.hv.PowerOn(ctx, vm); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// writeDisk copies the point's disk name to target. areas == nil: a new
// (zero) disk, only data extents travel. Otherwise only the given areas
// are written: the point's data there, zeros for its holes.
func (j *restoreJob) writeDisk(ctx context.Context, p blockmap.Point, name string, target vsphere.Disk, areas []blockmap.Extent, zeroHoles bool) (RestoreDiskResult, error) {
	res := RestoreDiskResult{Name: name, Target: target.Name}
	// Open the point's disk (its block map is read from the index) while
	// the write transport starts (an NBD server, an attach): neither
	// writes anything, and together they are most of a quick rollback's
	// fixed cost.
	opened := make(chan struct{})
	var (
		dr   PointDisk
		derr error
	)
	go func() {
		defer close(opened)
		dr, derr = j.openDisk(ctx, p, name, areas)
		j.phase("point disk opened", "disk", name)
	}()
	defer func() {
		<-opened
		if dr != nil {
			dr.Close()
		}
	}()
	if j.transports == nil {
		j.transports = j.writeTransports(ctx)
	}
	var lastErr error
	for _, wt := range j.transports {
		tr := wt.Name()
		select {
		case <-opened:
			if derr != nil {
				return res, derr
			}
		default:
		}
		t, err := j.openTarget(ctx, wt, target)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			j.log.Warn("write transport unavailable", "transport", tr, "disk", name, "err", err)
			lastErr = fmt.Errorf("%s: %w", tr, err)
			continue
		}
		if <-opened; derr != nil {
			_ = t.Close()
			return res, derr
		}
		res.Transport = tr
		j.phase("target opened", "disk", name)
		j.log.Info("writing disk", "disk", name, "target", target.FileName, "transport", tr)
		err = j.copyDisk(ctx, countingDisk{dr, &j.read}, t, areas, zeroHoles, &res)
		res.Retries = t.Retries()
		j.phase("disk written and flushed", "disk", name)
		cerr := t.Close()
		j.phase("target closed", "disk", name)
		if err == nil {
			err = cerr
		}
		if err != nil {
			return res, fmt.Errorf("restore disk %s through %s: %w", name, tr, err)
		}
		j.log.Info("disk restored", "disk", name, "target", target.FileName, "transport", tr, "bytes_written", res.BytesWritten, "zero_bytes", res.ZeroBytes, "retries", res.Retries)
		return res, nil
	}
	if <-opened; derr != nil {
		return res, derr
	}
	return res, fmt.Errorf("restore disk %s: no write transport worked: %w", name, lastErr)
}

func (j *restoreJob) copyDisk(ctx context.Context, dr PointDisk, t DiskTarget, areas []blockmap.Extent, zeroHoles bool, res *RestoreDiskResult) error {
	data := dr.DataExtents()
	var work []blockmap.Extent // data to send
	var zeros []blockmap.Extent
	if areas == nil {
		work = data
	} else {
		work, zeros = splitAreas(areas, data)
		if !zeroHoles {
			zeros = nil
		}
	}
	var total int64
	for _, e := range work {
		total += e.Length
	}
	add, finish := func(int64) {}, func() {}
	if j.opts.Progress != nil {
		add, finish = j.opts.Progress(j.vm.Name, res.Name, total)
	}
	defer finish()
	j.phase("copy planned", "disk", res.Name, "data_pieces", len(work), "zero_pieces", len(zeros))
	written, zeroed, err := copyExtents(ctx, dr, t, work, zeros, j.opts.ChunkSize, j.opts.Workers, add)
	res.BytesWritten += written
	res.ZeroBytes += zeroed
	if err != nil {
		return err
	}
	j.phase("copied", "disk", res.Name)
	return t.Flush(ctx)
}

// countingDisk counts the bytes read from a point's disk into n.
type countingDisk struct {
	PointDisk
	n *atomic.Int64
}

func (d countingDisk) ReadAt(b []byte, off int64) (int, error) {
	k, err := d.PointDisk.ReadAt(b, off)
	d.n.Add(int64(k))
	return k, err
}

// copyPiece is one unit of a restore's copy: a data range of at most one
// chunk, or a range to make zero.
type copyPiece struct {
	off, n int64
	zero   bool
}

// copyExtents writes the point's bytes of work (sorted, disjoint data
// ranges) and zeros over zeros to t with workers requests in flight: each
// worker reads a piece of at most chunk bytes from the point and writes
// it, so reads of the repository overlap writes to the target and the
// target sees several writes at once (what makes a quick rollback of
// hundreds of scattered blocks cost a few round trips' time, not one per
// block). Pieces never overlap, so their order does not matter. It
// returns the data and zero bytes done; the first error stops the rest.
func copyExtents(ctx context.Context, dr io.ReaderAt, t DiskTarget, work, zeros []blockmap.Extent, chunk, workers int, add func(int64)) (written, zeroed int64, err error) {
	if workers <= 0 {
		workers = DefaultRestoreWorkers
	}
	pieces := make(chan copyPiece)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex // guards written, zeroed and add
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for p := range pieces {
				if p.zero {
					if err := writeZeroes(ctx, t, p.off, p.n); err != nil {
						cancel(err)
						continue
					}
					mu.Lock()
					zeroed += p.n
					mu.Unlock()
					continue
				}
				b := buf[:p.n]
				if k, err := dr.ReadAt(b, p.off); err != nil && (err != io.EOF || k < len(b)) {
					cancel(fmt.Errorf("read the point at offset %d: %w", p.off, err))
					continue
				}
				if err := t.WriteAt(ctx, b, p.off); err != nil {
					cancel(err)
					continue
				}
				mu.Lock()
				written += p.n
				add(p.n)
				mu.Unlock()
			}
		}()
	}
	send := func(p copyPiece) bool {
		select {
		case pieces <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
feed:
	for _, e := range work {
		for off := e.Offset; off < e.Offset+e.Length; {
			n := min(int64(chunk), e.Offset+e.Length-off)
			if !send(copyPiece{off: off, n: n}) {
				break feed
			}
			off += n
		}
	}
	for _, z := range zeros {
		if ctx.Err() != nil || !send(copyPiece{off: z.Offset, n: z.Length, zero: true}) {
			break
		}
	}
	close(pieces)
	wg.Wait()
	return written, zeroed, context.Cause(ctx)
}

// smallZeroRange: zero ranges smaller than this are made zero without
// being deallocated (see allocatedZeroer).
const smallZeroRange = 1 << 20

// allocatedZeroer is a DiskTarget that can make a range read as zeros
// while keeping it allocated (NBD_CMD_FLAG_NO_HOLE, fallocate
// FALLOC_FL_ZERO_RANGE).
type allocatedZeroer interface {
	WriteZeroesAllocated(ctx context.Context, off, n int64) error
}

// writeZeroes makes [off, off+n) of t read as zeros. Ranges smaller than
// smallZeroRange stay allocated where the target can do that: a quick
// rollback zeroes hundreds of single blocks the guest wrote into the
// point's holes, and punching each one is a filesystem metadata change
// and a discard of its own (on ext4 with -o discard under nbdkit's file
// plugin: 0.3 ms a block, three times a 64 KiB write; see
// docs/performance-notes.md, #14). Larger ranges may become holes.
func writeZeroes(ctx context.Context, t DiskTarget, off, n int64) error {
	if az, ok := t.(allocatedZeroer); ok && n < smallZeroRange {
		return az.WriteZeroesAllocated(ctx, off, n)
	}
	return t.WriteZeroes(ctx, off, n)
}

// splitAreas cuts areas into the parts covered by data (sorted, merged
// extents) and the rest.
func splitAreas(areas, data []blockmap.Extent) (inData, holes []blockmap.Extent) {
	for _, a := range areas {
		pos, end := a.Offset, a.Offset+a.Length
		for _, d := range data {
			de := d.Offset + d.Length
			if de <= pos || d.Offset >= end {
				continue
			}
			lo, hi := max(pos, d.Offset), min(end, de)
			if lo > pos {
				holes = append(holes, blockmap.Extent{Offset: pos, Length: lo - pos})
			}
			inData = append(inData, blockmap.Extent{Offset: lo, Length: hi - lo})
			pos = hi
		}
		if pos < end {
			holes = append(holes, blockmap.Extent{Offset: pos, Length: end - pos})
		}
	}
	return inData, holes
}

// targetRef is the plain data a write transport needs for disk d of the
// VM being restored.
func (j *restoreJob) targetRef(d vsphere.Disk) DiskRef {
	r := DiskRef{Disk: d, LocalPath: j.localPath, Server: j.hv.Server(), Credentials: j.opts.Credentials, Thumbprint: j.opts.Thumbprint}
	if j.vm != nil {
		r.VMRef, r.VMName = j.vm.Ref.Value, j.vm.Name
	}
	return r
}

// localPath maps a datastore file name to a local path, reading the
// datastore directories once.
func (j *restoreJob) localPath(ctx context.Context, fileName string) (string, error) {
	if j.dirs == nil {
		dirs, err := j.hv.LocalDatastores(ctx, j.opts.DatastoreDirs)
		if err != nil {
			return "", err
		}
		j.dirs = dirs
	}
	return j.dirs.LocalPath(fileName)
}

// cleanupStale removes VMs left by restores of this machine whose process
// is gone (killed mid-restore): they still carry the restore marker.
func (j *restoreJob) cleanupStale(ctx context.Context) {
	if _, err := CleanupRestores(ctx, j.hv, j.opts.ProxyVM, j.log); err != nil {
		j.log.Warn("looking for VMs of interrupted restores failed", "err", err)
	}
}

// CleanupRestores destroys the VMs that carry vsphere.RestoreMarkerKey and
// were made by a restore process of this host that no longer runs. It
// returns their names; markers of other hosts or live processes are left.
// It logs the marker's job as restore_job: log is often a running
// restore's logger, which already carries its own "job".
//
// With a proxy VM, disks of such a VM that a killed hotadd restore left
// attached to the proxy are detached first.
func CleanupRestores(ctx context.Context, hv RestoreHypervisor, proxyVM string, log *slog.Logger) ([]string, error) {
	inc, err := hv.IncompleteRestores(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var removed []string
	for _, r := range inc {
		if r.Host != host || r.PID <= 0 || (r.PID != os.Getpid() && processAlive(r.PID)) || r.PID == os.Getpid() {
			log.Info("VM of a restore still running or of another host left alone", "vm", r.Name, "restore_job", r.Job, "host", r.Host, "pid", r.PID)
			continue
		}
		if proxyVM != "" {
			proxy, err := hv.FindRestoreProxy(ctx, proxyVM)
			if err != nil {
				return removed, err
			}
			detached, err := proxy.DetachFolder(ctx, r.VMXPath)
			if err != nil {
				return removed, err
			}
			for _, f := range detached {
				log.Warn("detached a disk of an interrupted restore from the proxy", "disk", f, "proxy", proxyVM, "restore_job", r.Job)
			}
		}
		if err := hv.DestroyVM(ctx, &vsphere.VM{Ref: r.Ref, Name: r.Name, VMPathName: r.VMXPath}); err != nil {
			return removed, fmt.Errorf("remove VM %s left by interrupted restore %s: %w", r.Name, r.Job, err)
		}
		log.Warn("removed a VM left by an interrupted restore", "vm", r.Name, "restore_job", r.Job, "pid", r.PID, "started", r.Started)
		removed = append(removed, r.Name)
	}
	return removed, nil
}

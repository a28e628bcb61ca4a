package backupd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// JobOptions configure backup jobs.
type JobOptions struct {
	// Transports are tried in order for each disk (default DefaultTransports).
	Transports []string
	// NBDCommand is the NBD server command template (default
	// DefaultNBDCommand); NBDURL, when set, is dialed instead (it may use
	// the same placeholders).
	NBDCommand string
	NBDURL     string
	// NBD tunes cairn's NBD client (retries, stall timeout, connections).
	NBD nbd.Options
	// NBDStartTimeout bounds the wait for the server's socket (default 30s).
	NBDStartTimeout time.Duration
	// ProxyVM is the appliance VM that hotadd attaches disks to.
	ProxyVM string
	// HotAddDevice finds the local device of a hot-added disk (default
	// DeviceByUUID).
	HotAddDevice HotAddDeviceFunc
	// DatastoreDirs maps datastore names to local directories, on top of
	// the datastores whose URL is a local directory (file transport and
	// {disk_local_path}).
	DatastoreDirs vsphere.DatastoreDirs
	// Quiesce is auto (default), require or off.
	Quiesce string
	// ExcludeDisks are disks not to back up (ParseDiskExclusions); the
	// point records them as excluded (PointMeta.SkippedDisks).
	ExcludeDisks []DiskExclusion
	// ParallelDisks is how many disks of a VM are read at once (default 2).
	ParallelDisks int
	// Copy tunes the copier (workers; chunk size, default 2 MiB here).
	Copy copier.Options
	// Credentials and Thumbprint fill {user}, {password_file} and
	// {thumbprint} in the NBD command.
	Credentials vsphere.Credentials
	Thumbprint  string
	// Progress, when set, is called once per disk before it is read; add
	// counts bytes read and finish is called when the disk is done.
	Progress Progress
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Hooks are the administrator's commands run before and after the
	// snapshot and after the backup (nil: none; hooks.go).
	Hooks *VMHooks
	// Anomaly are the thresholds of the suspicious-change verdict kept
	// with every new point (zero: the defaults; backupd/anomaly).
	Anomaly anomaly.Thresholds
}

func (o JobOptions) nbdStartTimeout() time.Duration {
	if o.NBDStartTimeout > 0 {
		return o.NBDStartTimeout
	}
	return 30 * time.Second
}

// DiskResult is what a job did for one disk.
type DiskResult struct {
	Name         string `json:"name"`
	Transport    string `json:"transport"`
	Full         bool   `json:"full"`
	FullReason   string `json:"full_reason,omitempty"`
	ChangedBytes int64  `json:"changed_bytes"`
	BytesRead    int64  `json:"bytes_read"`
	BytesWritten int64  `json:"bytes_written"`
	ChangeID     string `json:"change_id,omitempty"`
	// Retries counts NBD reads that were retried (transient server errors,
	// reconnects).
	Retries int64 `json:"retries,omitempty"`
}

// Result is the outcome of a successful job.
type Result struct {
	JobID       string         `json:"job_id"`
	VM          string         `json:"vm"`
	Point       blockmap.Point `json:"-"`
	PointID     string         `json:"point"`
	Consistency string         `json:"consistency"`
	Disks       []DiskResult   `json:"disks"`
	// Skipped are the VM's disks the point holds no data of (independent,
	// physical-mode RDM, excluded); Warnings say what an administrator
	// should know about the point (a disk left out that was not excluded
	// on purpose).
	Skipped  []SkippedDisk `json:"skipped_disks,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	// Hooks are the hooks that ran around the backup.
	Hooks []HookResult `json:"hooks,omitempty"`
}

// BytesRead sums the disks' bytes read.
func (r *Result) BytesRead() (n int64) {
	for _, d := range r.Disks {
		n += d.BytesRead
	}
	return n
}

// BytesWritten sums the disks' bytes stored.
func (r *Result) BytesWritten() (n int64) {
	for _, d := range r.Disks {
		n += d.BytesWritten
	}
	return n
}

// NewJobID returns a sortable, unique job id (UTC time and random hex).
func NewJobID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func newVMJob(repo *blockmap.Repo, hv Hypervisor, vmSpec string, opts JobOptions) *vmJob {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if len(opts.Transports) == 0 {
		opts.Transports = DefaultTransports
	}
	if opts.ParallelDisks <= 0 {
		opts.ParallelDisks = 2
	}
	if opts.Copy.ChunkSize <= 0 {
		// memory in flight is ParallelDisks x workers x chunk: 2 MiB chunks
		// keep 4 parallel disks well under 256 MiB RSS
		opts.Copy.ChunkSize = 2 << 20
	}
	j := &vmJob{id: NewJobID(), spec: vmSpec, repo: repo, hv: hv, opts: opts}
	j.log = opts.Logger.With("job", j.id)
	return j
}

// vmJob is one running backup of one VM.
type vmJob struct {
	id    string
	spec  string
	repo  *blockmap.Repo
	hv    Hypervisor
	opts  JobOptions
	log   *slog.Logger
	vm    *vsphere.VM
	snap  *vsphere.Snapshot
	proxy Proxy // nil without hotadd
	// disks are the snapshot's disks to read; skipped and warnings those
	// left out and why (classifyDisks, by snapDisks).
	disks    []vsphere.Disk
	skipped  []SkippedDisk
	warnings []string
	// hookWarnings are failed hooks that did not stop the backup; hooks
	// every hook that ran (hooks.go).
	hookWarnings []string
	hooks        []HookResult

	dirsOnce sync.Once
	dirs     vsphere.DatastoreDirs
	dirsErr  error
}

// BackupVM backs up one VM (name, inventory path or MoRef) of a vSphere
// connection as one new recovery point and records the job in
// <repo>/jobs/.
func BackupVM(ctx context.Context, repo *blockmap.Repo, conn *vsphere.Conn, vmSpec string, opts JobOptions) (*Result, error) {
	return Backup(ctx, repo, NewVSphere(conn), vmSpec, opts)
}

// Backup backs up one VM of the hypervisor as one new recovery point and
// records the job in <repo>/jobs/.
func Backup(ctx context.Context, repo *blockmap.Repo, hv Hypervisor, vmSpec string, opts JobOptions) (*Result, error) {
	j := newVMJob(repo, hv, vmSpec, opts)
	rec := JobRecord{ID: j.id, Kind: JobBackup, VM: vmSpec, VCenter: hv.Endpoint(), Start: time.Now().UTC(), State: JobRunning}
	jobs := NewJobLog(repo.Dir())
	if err := jobs.Append(rec); err != nil {
		j.log.Warn("cannot record the job", "error", err)
	}
	res, err := j.run(ctx)
	if res != nil {
		res.Warnings = append(res.Warnings, j.hookWarnings...)
	}
	res = j.postBackup(ctx, res, err)
	rec.End = time.Now().UTC()
	if j.vm != nil {
		rec.VM = j.vm.Name
	}
	rec.Hooks = j.hooks
	if err != nil {
		rec.State, rec.Error = EndState(Cancelled(ctx, err)), err.Error()
		rec.Warnings = j.hookWarnings
	} else {
		rec.State, rec.Point, rec.BytesRead, rec.BytesWritten = JobOK, res.PointID, res.BytesRead(), res.BytesWritten()
		rec.Consistency, rec.Warnings = res.Consistency, res.Warnings
	}
	if aerr := jobs.Append(rec); aerr != nil {
		j.log.Warn("cannot record the job", "error", aerr)
	}
	return res, err
}

func (j *vmJob) run(ctx context.Context) (res *Result, err error) {
	err = j.withSnapshot(ctx, func(ctx context.Context) error {
		res, err = j.backup(ctx)
		return err
	})
	return res, err
}

// withSnapshot finds and locks the VM, cleans up what a killed run left,
// makes sure CBT is on, takes the job's snapshot, runs body and removes the
// snapshot whatever happens.
func (j *vmJob) withSnapshot(ctx context.Context, body func(ctx context.Context) error) (err error) {
	vm, err := j.hv.FindVM(ctx, j.spec)
	if err != nil {
		return err
	}
	j.vm = vm
	if err := blockmap.ValidateName("VM", vm.Name); err != nil {
		return err
	}
	if keep, skipped, _ := classifyDisks(vm.Name, vm.Disks, j.opts.ExcludeDisks); len(keep) == 0 {
		// refused before any snapshot (snapDisks checks the snapshot's disks again)
		return fmt.Errorf("VM %s: no disk left to back up (%s): %w", vm.Name, skippedSummary(skipped), vsphere.ErrNotBackupable)
	}
	lock, err := j.repo.LockVM(ctx, vm.Name, "cairn backup job "+j.id)
	if err != nil {
		return err
	}
	defer lock.Release()
	ctx = blockmap.WithVMLock(ctx, lock)
	// pre_snapshot runs before cairn changes anything on the VM; once it
	// ran, post_snapshot runs whatever happens (hooks_job.go)
	preErr := j.preSnapshot(ctx)
	thawed := false
	defer func() {
		if !thawed {
			j.postSnapshot(ctx, err)
		}
	}()
	if preErr != nil {
		return preErr
	}
	if slices.Contains(j.opts.Transports, TransportHotAdd) && j.opts.ProxyVM != "" {
		if j.proxy, err = j.hv.FindProxy(ctx, j.opts.ProxyVM); err != nil {
			return err
		}
		if _, err := j.proxy.CleanupStale(ctx, vm); err != nil {
			return fmt.Errorf("clean up disks left on proxy %s: %w", j.proxy.Name(), err)
		}
	}
	if _, err := j.hv.RemoveStaleSnapshots(ctx, vm); err != nil {
		return fmt.Errorf("remove snapshots left by an interrupted run: %w", err)
	}
	if _, err := j.hv.EnableCBT(ctx, vm); err != nil {
		return err
	}
	name := vsphere.SnapshotPrefix + j.id
	snap, err := vsphere.SnapshotWithMode(ctx, vm.Name, j.opts.Quiesce, j.log, func(ctx context.Context, quiesce bool) (*vsphere.Snapshot, error) {
		return j.hv.CreateSnapshot(ctx, vm, name, quiesce)
	})
	thawed = true
	j.postSnapshot(ctx, err) // thaw: also when the snapshot failed
	if snap != nil && snap.Ref.Value != "" {
		defer func() {
			// A failed removal does not fail a job whose point is
			// committed: it is logged and the next run removes the snapshot.
			if rerr := j.hv.RemoveSnapshot(vm, snap); rerr != nil {
				j.log.Error("removing the backup snapshot failed; the next run removes it", "vm", vm.Name, "snapshot", snap.Name, "error", rerr)
			}
		}()
	}
	if err != nil {
		return err
	}
	j.snap = snap
	j.log.Info("snapshot taken", "vm", vm.Name, "snapshot", snap.Name, "consistency", snap.Consistency)
	if err := j.snapDisks(); err != nil {
		return err
	}
	return body(ctx)
}

// backup reads the snapshot into a new point and commits it.
func (j *vmJob) backup(ctx context.Context) (res *Result, err error) {
	sess, err := j.beginPoint(ctx, "cairn backup job "+j.id)
	if err != nil {
		return nil, fmt.Errorf("begin point of %s: %w", j.vm.Name, err)
	}
	defer func() {
		if err != nil {
			if aerr := sess.Abort(context.WithoutCancel(ctx)); aerr != nil {
				j.log.Error("aborting the point failed; the next writer sweeps it", "error", aerr)
			}
		}
	}()
	base, err := cbtBase(ctx, j.repo, sess)
	if err != nil {
		return nil, fmt.Errorf("read points of %s: %w", j.vm.Name, err)
	}
	disks := make([]*diskJob, 0, len(j.disks))
	for _, d := range j.disks {
		dj, err := j.prepareDisk(ctx, sess, d, base)
		if err != nil {
			return nil, err
		}
		disks = append(disks, dj)
	}
	if err := j.copyDisks(ctx, disks); err != nil {
		return nil, err
	}
	if err := j.attachVMFiles(ctx, sess); err != nil {
		return nil, err
	}
	p, err := sess.Commit(ctx)
	if err != nil {
		return nil, fmt.Errorf("commit point of %s: %w", j.vm.Name, err)
	}
	res = &Result{JobID: j.id, VM: j.vm.Name, Point: p, PointID: p.ID, Consistency: p.Consistency, Skipped: j.skipped, Warnings: j.warnings}
	for _, dj := range disks {
		dr := dj.result
		if info, ok := p.Disk(dr.Name); ok {
			dr.BytesWritten, dr.BytesRead = info.StoredBytes, info.ReadBytes
		}
		res.Disks = append(res.Disks, dr)
	}
	j.log.Info("backup committed", "vm", j.vm.Name, "point", p.ID, "consistency", p.Consistency, "bytes_read", res.BytesRead(), "bytes_written", res.BytesWritten())
	return res, nil
}

// snapDisks splits the snapshot's disks into those to read (j.disks) and
// those left out (j.skipped, with j.warnings); a VM with no disk left is
// refused.
func (j *vmJob) snapDisks() error {
	j.disks, j.skipped, j.warnings = classifyDisks(j.vm.Name, j.snap.Disks, j.opts.ExcludeDisks)
	for _, w := range j.warnings {
		j.log.Warn(w, "vm", j.vm.Name)
	}
	for _, s := range j.skipped {
		if s.Kind == vsphere.SkipExcluded {
			j.log.Info("disk excluded", "vm", j.vm.Name, "disk", s.Name, "reason", s.Reason)
		}
	}
	if len(j.disks) == 0 {
		return fmt.Errorf("VM %s: no disk left to back up (%s): %w", j.vm.Name, skippedSummary(j.skipped), vsphere.ErrNotBackupable)
	}
	return nil
}

// beginPoint begins the point of the job's snapshot.
func (j *vmJob) beginPoint(ctx context.Context, purpose string) (*blockmap.Session, error) {
	pm := PointMeta{
		Source: "vsphere", VCenter: j.hv.Endpoint(), VMMoRef: j.vm.Ref.Value, VMName: j.vm.Name,
		HardwareVersion: j.vm.HardwareVersion, JobID: j.id, Snapshot: j.snap.Name,
		Consistency: j.snap.Consistency, QuiesceError: j.snap.QuiesceError,
		SkippedDisks: j.skipped, Warnings: j.warnings,
	}
	return j.repo.BeginPoint(ctx, j.vm.Name, blockmap.PointOptions{
		Time: j.snap.Time, Consistency: j.snap.Consistency, Meta: mustJSON(pm), Purpose: purpose,
		Judge: judgeFor(j.repo, j.opts.Anomaly, j.log),
	})
}

// diskJob is one disk of a job: its plan and writer.
type diskJob struct {
	disk   vsphere.Disk // the snapshot's frozen disk
	plan   Plan
	w      *blockmap.DiskWriter
	meta   DiskMeta
	result DiskResult
}

// prepareDisk plans disk d since base, the point CBT is asked since
// (cbtBase), and adds it to sess.
func (j *vmJob) prepareDisk(ctx context.Context, sess *blockmap.Session, d vsphere.Disk, base *blockmap.Point) (*diskJob, error) {
	plan, err := planCBTDisk(ctx, j.hv, j.vm, j.snap, d, sess, base)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.Name, err)
	}
	meta := diskMeta(d)
	w, plan, err := addDisk(ctx, sess, d.Name, d.Capacity, plan, mustJSON(meta), func(ctx context.Context, reason string) (Plan, error) {
		return fullPlan(ctx, j.hv, j.vm, j.snap, d, reason)
	})
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.Name, err)
	}
	if plan.Full {
		j.log.Info("full backup of disk", "vm", j.vm.Name, "disk", d.Name, "reason", plan.Reason)
	}
	return &diskJob{disk: d, plan: plan, w: w, meta: meta}, nil
}

// copyDisks reads the disks, ParallelDisks at a time.
func (j *vmJob) copyDisks(ctx context.Context, disks []*diskJob) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, j.opts.ParallelDisks)
	var wg sync.WaitGroup
	for _, dj := range disks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := j.copyDisk(ctx, dj); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func (j *vmJob) copyDisk(ctx context.Context, dj *diskJob) (err error) {
	d := dj.disk
	m := dj.meta
	m.Full, m.FullReason, m.BaseChangeID = dj.plan.Full, dj.plan.Reason, dj.plan.Since
	if dj.plan.Unchanged() {
		// nothing changed: no transport to open
		dj.w.SetMeta(mustJSON(m))
		dj.result = DiskResult{Name: d.Name, Full: m.Full, FullReason: m.FullReason, ChangeID: d.ChangeID}
		j.log.Info("disk unchanged", "vm", j.vm.Name, "disk", d.Name)
		return nil
	}
	src, transport, err := j.openSource(ctx, d)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := src.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("disk %s: close %s transport: %w", d.Name, transport, cerr)
		}
	}()
	read, total, err := copyDisk(ctx, src, dj.w, copyStep{VM: j.vm.Name, Disk: d.Name, Plan: dj.plan, Options: j.opts.Copy, Progress: j.opts.Progress,
		Started: func(total int64) {
			j.log.Info("reading disk", "vm", j.vm.Name, "disk", d.Name, "transport", transport, "full", dj.plan.Full, "bytes", total)
		}})
	if err != nil {
		return fmt.Errorf("disk %s via %s: %w", d.Name, transport, err)
	}
	m.Transport, m.BytesRead, m.ChangedBytes = transport, read, copier.Total(dj.plan.Areas)
	dj.w.SetMeta(mustJSON(m))
	dj.result = DiskResult{Name: d.Name, Transport: transport, Full: m.Full, FullReason: m.FullReason, ChangedBytes: total, BytesRead: read, ChangeID: d.ChangeID}
	if ns, ok := src.(*source.NBD); ok {
		dj.result.Retries = ns.Client().Stats().Retries
	}
	return nil
}

// localPath maps a datastore file to its local path.
func (j *vmJob) localPath(ctx context.Context, fileName string) (string, error) {
	j.dirsOnce.Do(func() { j.dirs, j.dirsErr = j.hv.LocalDatastores(ctx, j.opts.DatastoreDirs) })
	if j.dirsErr != nil {
		return "", j.dirsErr
	}
	return j.dirs.LocalPath(fileName)
}

// diskRef is the plain data the transports need for disk d of the
// job's snapshot.
func (j *vmJob) diskRef(d vsphere.Disk) DiskRef {
	r := DiskRef{Disk: d, LocalPath: j.localPath, Server: j.hv.Server(), Credentials: j.opts.Credentials, Thumbprint: j.opts.Thumbprint}
	if j.vm != nil {
		r.VMRef, r.VMName = j.vm.Ref.Value, j.vm.Name
	}
	if j.snap != nil {
		r.SnapshotRef = j.snap.Ref.Value
	}
	return r
}

// openSource opens disk d through the first of the job's transports that
// can.
func (j *vmJob) openSource(ctx context.Context, d vsphere.Disk) (source.Source, string, error) {
	var proxy HotAddProxy
	if j.proxy != nil {
		proxy = j.proxy
	}
	return openFirst(ctx, transports(j.opts.Transports, j.opts, proxy, j.log), j.diskRef(d), j.log)
}

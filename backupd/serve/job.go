package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// RunRecord is one backup of one VM run by the server (scheduled or
// requested through the API). A run that could not reach its vCenter or
// select its VMs has VM "*".
type RunRecord struct {
	ID       string    `json:"id"`
	Job      string    `json:"job"`
	VM       string    `json:"vm"`
	Host     string    `json:"host,omitempty"` // ESXi host of the VM
	Trigger  string    `json:"trigger"`        // schedule or api
	State    string    `json:"state"`          // queued, running, ok, failed
	Attempts int       `json:"attempts,omitempty"`
	Queued   time.Time `json:"queued"`
	Start    time.Time `json:"start,omitzero"`
	End      time.Time `json:"end,omitzero"`
	// Committed is when the point was committed and the VM's host slot
	// released; retention and any verify against the source follow.
	Committed    time.Time `json:"committed,omitzero"`
	Point        string    `json:"point,omitempty"`
	BytesRead    int64     `json:"bytes_read,omitempty"`
	BytesWritten int64     `json:"bytes_written,omitempty"`
	Pruned       int       `json:"pruned,omitempty"`
	// SourceVerify is the result of the verify against the source that
	// followed this backup, when one was due: "ok", "repaired POINT",
	// "differs" or "failed: reason".
	SourceVerify string `json:"source_verify,omitempty"`
	Error        string `json:"error,omitempty"`
	// Progress of a running attempt (run_progress.go).
	Progress *RunProgress `json:"progress,omitempty"`
	// Warnings of the run (disks left out, failed hooks with on_failure
	// warn, failed post hooks); Hooks are the hooks that ran (hooks.go).
	Warnings []string             `json:"warnings,omitempty"`
	Hooks    []backupd.HookResult `json:"hooks,omitempty"`
}

// Run states.
const (
	StateQueued  = "queued"
	StateRunning = "running"
	StateOK      = "ok"
	StateFailed  = "failed"
	// StateCancelled is a run a stopping server aborted: no failure (the
	// job log records it as cancelled too); the VM's next run backs it up.
	StateCancelled = backupd.JobCancelled
)

// JobStatus is what /api/v1/status says about one job.
type JobStatus struct {
	Name     string    `json:"name"`
	Schedule string    `json:"schedule"`
	NextRun  time.Time `json:"next_run,omitzero"`
	Running  int       `json:"running"` // VM backups of the job in progress
	LastEnd  time.Time `json:"last_end,omitzero"`
	LastOK   int       `json:"last_ok"`     // VMs backed up by the last run
	LastFail int       `json:"last_failed"` // VMs that failed in the last run
	// LastHookFailures are the hooks that failed in the last run, each
	// "HOOK hook PROGRAM: why: last output line" (hooks.go).
	LastHookFailures []string `json:"last_hook_failures,omitempty"`
}

func (s *Server) newRun(job, vm, trigger string) *RunRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newRunLocked(job, vm, trigger)
}

// newRunLocked is newRun with s.mu held.
func (s *Server) newRunLocked(job, vm, trigger string) *RunRecord {
	r := &RunRecord{ID: backupd.NewJobID(), Job: job, VM: vm, Trigger: trigger, State: StateQueued, Queued: time.Now().UTC()}
	s.runs = append(s.runs, r)
	if len(s.runs) > maxRuns {
		s.runs = s.runs[len(s.runs)-maxRuns:]
	}
	return r
}

func (s *Server) update(r *RunRecord, f func(r *RunRecord)) {
	s.mu.Lock()
	f(r)
	s.mu.Unlock()
}

// Runs returns copies of the recorded runs, oldest first.
func (s *Server) Runs() []RunRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RunRecord, len(s.runs))
	for i, r := range s.runs {
		out[i] = *r
	}
	return out
}

func (s *Server) jobStatus(name string) *JobStatus {
	st := s.jobs[name]
	if st == nil {
		st = &JobStatus{Name: name}
		s.jobs[name] = st
	}
	return st
}

func (s *Server) setNextRun(job, sched string, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.jobStatus(job)
	st.Schedule, st.NextRun = sched, next.UTC()
}

// runJob backs up the VMs of job (those it selects, or only runs when
// given), each within the server's total and per-host caps and the job's
// own parallelism, retrying failed VMs; then applies retention and, when
// due, a verify against the source. Failures are recorded and logged; the
// next run tries again.
func (s *Server) runJob(ctx context.Context, cfg *Config, job Job, runs []*RunRecord, trigger string) {
	log := s.log.With("job_name", job.Name) // backupd adds "job": its job id
	start := time.Now()
	fail := func(err error) {
		if runs == nil {
			runs = []*RunRecord{s.newRun(job.Name, "*", trigger)}
		}
		for _, r := range runs {
			s.finish(r, start, backupd.Cancelled(ctx, err))
			s.tellBackupFailed(ctx, job.Name, r, 0, err)
		}
		if ctx.Err() == nil { // a stopping server's aborted run is no failure
			s.metrics.jobFailed(job.Name)
		}
		s.jobEnded(job.Name, 0, len(runs))
	}
	if ctx.Err() != nil {
		fail(fmt.Errorf("server stopping: %w", ctx.Err()))
		return
	}
	vc := cfg.VCenterByName(job.VCenter)
	conn, opts, err := s.connect(ctx, vc, job, log)
	if err != nil {
		log.Error("job failed: cannot connect to the vCenter; it runs again at its next time", "vcenter", vc.Name, "error", err)
		fail(err)
		return
	}
	defer conn.Close()
	hosts := map[string]string{}
	missing := 0
	if runs == nil {
		sel := job.Selection()
		sel.Credentials = opts.Credentials
		vms, err := conn.SelectVMs(ctx, sel)
		if err != nil {
			log.Error("job failed: select VMs", "error", err)
			fail(err)
			return
		}
		if len(vms) == 0 {
			log.Warn("the job selects no VM", "vms", job.VMs, "folders", job.Folders, "tags", job.Tags)
		}
		missing = s.recordMissingVMs(job, vms, trigger, log)
		names := make([]string, len(vms))
		for i, vm := range vms {
			names[i] = vm.Name
		}
		s.inv.put(job.Name, names)
		for _, vm := range vms {
			r := s.newRun(job.Name, vm.Name, trigger)
			runs = append(runs, r)
			hosts[vm.Name] = vm.Host
		}
	}
	if o := s.preJob(ctx, job, runs, log); o.Err != nil {
		log.Warn("pre_job hook ended the job run", "error", o.Err)
		for _, r := range runs {
			s.finish(r, start, backupd.Cancelled(ctx, o.Err))
			if !skippedByHook(o.Err) {
				s.tellBackupFailed(ctx, job.Name, r, 0, o.Err)
			}
		}
		failed := len(runs)
		if skippedByHook(o.Err) {
			failed = 0
		} else if ctx.Err() == nil {
			s.metrics.jobFailed(job.Name)
		}
		s.jobEnded(job.Name, 0, failed)
		s.postJob(ctx, job, runs, log)
		return
	}
	defer s.postJob(ctx, job, runs, log) // and its hook failures (hooks.go)
	par := job.Parallel
	if par < 1 {
		par = cfg.Parallelism.VMs
	}
	jobSem := make(chan struct{}, max(par, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, failed := 0, 0
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case jobSem <- struct{}{}:
				defer func() { <-jobSem }()
			case <-ctx.Done():
				s.finish(r, start, backupd.Cancelled(ctx, fmt.Errorf("server stopping: %w", ctx.Err())))
				return
			}
			host, known := hosts[r.VM]
			if !known {
				if vm, err := conn.FindVM(ctx, r.VM); err == nil {
					host = conn.HostName(ctx, vm.Host) // by name, as a selection has it
				}
			}
			err := s.backupOne(ctx, conn, opts, job, r, host, log.With("vm", r.VM, "run", r.ID))
			mu.Lock()
			switch {
			case skippedByHook(err): // neither backed up nor failed
			case err != nil:
				failed++
			default:
				ok++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.jobEnded(job.Name, ok, failed+missing)
	s.updateRepoMetrics(ctx)
	s.replicateAfterBackup(ctx, cfg, job, committedVMs(runs))
}

func (s *Server) jobEnded(job string, ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.jobStatus(job)
	st.LastEnd, st.LastOK, st.LastFail = time.Now().UTC(), ok, failed
}

// backupOne backs up one VM of a job run with retries, then applies
// retention and the verify against the source when due.
func (s *Server) backupOne(ctx context.Context, conn *vsphere.Conn, opts backupd.JobOptions, job Job, r *RunRecord, host string, log *slog.Logger) error {
	s.update(r, func(r *RunRecord) { r.Host = host })
	// The VM's lock is held from the first attempt to the last step
	// (retention, verify against the source): a second run of the VM
	// waits, and an import or prune of it in another process is refused.
	lock, err := s.repo.WaitLockVM(ctx, r.VM, "cairn serve job "+job.Name+" run "+r.ID)
	if err != nil {
		s.finish(r, time.Now(), backupd.Cancelled(ctx, fmt.Errorf("server stopping: %w", err)))
		return err
	}
	defer lock.Release()
	ctx = blockmap.WithVMLock(ctx, lock)
	var res *backupd.Result
	for attempt := 1; ; attempt++ {
		release, err := s.currentSlots().Acquire(ctx, host)
		if err != nil {
			s.finish(r, time.Now(), backupd.Cancelled(ctx, fmt.Errorf("server stopping: %w", err)))
			return err
		}
		s.setRunning(job.Name, 1)
		s.update(r, func(r *RunRecord) {
			r.State, r.Attempts, r.Progress = StateRunning, attempt, nil
			if r.Start.IsZero() {
				r.Start = time.Now().UTC()
			}
		})
		log.Info("backup started", "trigger", r.Trigger, "attempt", attempt, "host", host)
		c := conn
		if attempt > 1 { // the failure may have been the connection: log in again
			var cerr error
			if c, _, cerr = s.connect(ctx, s.Config().VCenterByName(job.VCenter), job, log); cerr != nil {
				c, err = nil, cerr
			}
		}
		if c != nil {
			res, err = backupd.BackupVM(ctx, s.repo, c, r.VM, s.withHooks(s.withProgress(opts, r), job, r))
			if c != conn {
				c.Close()
			}
		}
		if err == nil {
			s.update(r, func(r *RunRecord) { r.Committed = time.Now().UTC() })
		}
		release()
		s.setRunning(job.Name, -1)
		if err == nil {
			break
		}
		permanent := errors.Is(err, vsphere.ErrVMNotFound) || errors.Is(err, vsphere.ErrNotBackupable)
		if skippedByHook(err) {
			log.Warn("backup skipped by pre hook", "error", err)
			s.finish(r, time.Now(), err)
			return err
		}
		if ctx.Err() != nil || attempt > job.Retries || permanent {
			log.Error("backup failed", "attempts", attempt, "error", err)
			s.finish(r, time.Now(), backupd.Cancelled(ctx, err))
			s.tellBackupFailed(ctx, job.Name, r, attempt, err)
			if ctx.Err() == nil { // as tellBackupFailed: not a stopping server's abort
				s.metrics.jobFailed(job.Name)
			}
			return err
		}
		s.metrics.retried(job.Name)
		log.Warn("backup failed; retrying", "attempt", attempt, "retry_in", job.RetryDelay.String(), "error", err)
		if !sleepUntil(ctx, time.Now().Add(job.RetryDelay)) {
			s.finish(r, time.Now(), backupd.Cancelled(ctx, fmt.Errorf("server stopping before retry: %w (last error: %v)", ctx.Err(), err)))
			return ctx.Err()
		}
	}
	s.update(r, func(r *RunRecord) {
		r.Point, r.BytesRead, r.BytesWritten = res.PointID, res.BytesRead(), res.BytesWritten()
		r.Warnings = append(r.Warnings, res.Warnings...)
	})
	log.Info("backup done", "point", res.PointID, "bytes_read", res.BytesRead(), "bytes_written", res.BytesWritten())
	s.metrics.jobDone(job.Name, r.VM, time.Since(r.Start), res.BytesRead(), res.BytesWritten())
	s.tellBackupDone(job, r, res)
	s.tellSuspicious(job, r, res, log)
	if pol, others := s.retentionFor(s.Config(), job, r.VM); !pol.IsZero() {
		pr, err := s.repo.PruneWith(ctx, r.VM, pol, false, s.pruneGuard(log))
		logProtected(log, pr)
		if err != nil && ctx.Err() != nil {
			log.Info("retention stopped with the server; the next backup of the VM applies it", "error", err)
		} else if err != nil {
			log.Error("retention failed", "error", err)
			s.tell(notify.Event{Kind: notify.RetentionFailed, Severity: notify.Failure, Job: job.Name, VM: r.VM, Error: err.Error(),
				Summary: fmt.Sprintf("retention of %s failed (job %s)", r.VM, job.Name)})
		} else {
			s.update(r, func(r *RunRecord) { r.Pruned = len(pr.Deleted) })
			if len(pr.Deleted) > 0 {
				log.Info("retention applied", "kept", len(pr.Kept), "deleted", len(pr.Deleted), "also_kept_for", others)
			}
		}
	} else if len(others) > 0 && !job.Retention.IsZero() {
		log.Info("retention skipped: another job that backs the VM up has no retention and keeps every point", "jobs", others)
	}
	if job.VerifySourceEvery > 0 {
		s.maybeVerifySource(ctx, conn, opts, job, r, host, log)
	}
	if job.BootCheck != nil && job.BootCheck.AfterBackup {
		s.startBootCheck(ctx, job, r.VM, res.PointID, log)
	}
	s.finish(r, time.Now(), nil)
	return nil
}

func (s *Server) setRunning(job string, delta int) {
	s.mu.Lock()
	s.jobStatus(job).Running += delta
	s.mu.Unlock()
	s.metrics.running.Add(float64(delta))
}

func (s *Server) finish(r *RunRecord, start time.Time, err error) {
	s.update(r, func(r *RunRecord) {
		if r.Start.IsZero() {
			r.Start = start.UTC()
		}
		r.End = time.Now().UTC()
		r.State = StateOK
		switch backupd.EndState(err) {
		case backupd.JobCancelled: // marked by backupd.Cancelled: the server stops
			r.State, r.Error = StateCancelled, err.Error()
		case backupd.JobFailed:
			r.State, r.Error = StateFailed, err.Error()
		case backupd.JobSkipped: // by a pre hook (hooks.go)
			r.State, r.Error = StateSkipped, err.Error()
		}
	})
}

// connect logs in to vc and builds the job options of job.
func (s *Server) connect(ctx context.Context, vc *VCenter, job Job, log *slog.Logger) (*vsphere.Conn, backupd.JobOptions, error) {
	var opts backupd.JobOptions
	if vc == nil {
		return nil, opts, fmt.Errorf("job %s: vcenter %q is no longer configured", job.Name, job.VCenter)
	}
	creds, err := vsphere.LoadCredentials(vc.Credentials)
	if err != nil {
		if errors.Is(err, vsphere.ErrNoCredentials) {
			err = fmt.Errorf("vcenter %s: %w: give credentials: FILE for it in the config", vc.Name, err)
		}
		return nil, opts, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.metrics.logins.WithLabelValues(vc.Name).Inc()
	conn, err := vsphere.Connect(cctx, vsphere.ConnectOptions{
		URL: vc.URL, Credentials: creds, Thumbprint: vc.Thumbprint, Insecure: vc.Insecure, Logger: log,
	})
	defer func() {
		if ctx.Err() == nil {
			s.vcs.set(vc.Name, err)
		}
	}()
	if err != nil {
		var untrusted *vsphere.UntrustedCertError
		switch {
		case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("vcenter %s did not answer within 30s: %w", vc.Name, err)
		case errors.As(err, &untrusted):
			err = fmt.Errorf("%w: if that is the thumbprint vCenter %s shows, set thumbprint: %s for it in the config", err, vc.Name, untrusted.Thumbprint)
		}
		return nil, opts, err
	}
	opts = backupd.JobOptions{
		Transports: job.Transports, NBDCommand: job.NBDCommand, Quiesce: job.Quiesce, ExcludeDisks: job.ExcludeDisks,
		Credentials: creds, Thumbprint: vc.Thumbprint, Logger: log, Anomaly: job.Anomaly,
	}
	if opts.NBDCommand == "" {
		opts.NBDCommand = backupd.DefaultNBDCommand
	}
	opts.Hooks = job.Hooks.VMHooks(job.Name)
	opts.NBD.Retries = 5
	opts.NBD.StallTimeout = 60 * time.Second
	return conn, opts, nil
}

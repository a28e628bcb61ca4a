package serve

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"time"

	"github.com/vmware/govmomi/find"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// RunRecord is one backup of one VM run by the server (scheduled or
// requested through the API). A run that could not reach its vCenter has
// VM "*" when it had not resolved its VMs yet.
type RunRecord struct {
	ID      string    `json:"id"`
	Job     string    `json:"job"`
	VM      string    `json:"vm"`
	Trigger string    `json:"trigger"` // schedule or api
	State   string    `json:"state"`   // queued, running, ok, failed
	Queued  time.Time `json:"queued"`
	Start   time.Time `json:"start,omitzero"`
	End     time.Time `json:"end,omitzero"`
	Point   string    `json:"point,omitempty"`
	Pruned  int       `json:"pruned,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Run states.
const (
	StateQueued  = "queued"
	StateRunning = "running"
	StateOK      = "ok"
	StateFailed  = "failed"
)

func (s *Server) newRun(job, vm, trigger string) *RunRecord {
	r := &RunRecord{ID: backupd.NewJobID(), Job: job, VM: vm, Trigger: trigger, State: StateQueued, Queued: time.Now().UTC()}
	s.mu.Lock()
	s.runs = append(s.runs, r)
	if len(s.runs) > maxRuns {
		s.runs = s.runs[len(s.runs)-maxRuns:]
	}
	s.mu.Unlock()
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

// runJob backs up the VMs of job (those matching its patterns, or only
// runs when given), then applies its retention to each VM backed up.
// Failures are recorded and logged; the next tick tries again.
func (s *Server) runJob(ctx context.Context, cfg *Config, job Job, runs []*RunRecord, trigger string) {
	log := s.log.With("job_name", job.Name) // backupd adds "job": its job id
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	if ctx.Err() != nil {
		for _, r := range runs {
			s.finish(r, time.Now(), fmt.Errorf("server stopping: %w", ctx.Err()))
		}
		return
	}
	vc := cfg.VCenterByName(job.VCenter)
	start := time.Now()
	conn, opts, err := s.connect(ctx, vc, job, log)
	if err != nil {
		log.Error("job failed: cannot connect to the vCenter; retrying at the next tick", "vcenter", vc.Name, "error", err)
		if runs == nil {
			runs = []*RunRecord{s.newRun(job.Name, "*", trigger)}
		}
		for _, r := range runs {
			s.finish(r, start, err)
		}
		s.metrics.jobFailed(job.Name)
		return
	}
	defer conn.Close()
	if runs == nil {
		names, err := matchVMs(ctx, conn, job.VMs)
		if err != nil {
			log.Error("job failed: list VMs", "error", err)
			s.finish(s.newRun(job.Name, "*", trigger), start, err)
			s.metrics.jobFailed(job.Name)
			return
		}
		if len(names) == 0 {
			log.Warn("no VM matches the job's patterns", "vms", job.VMs)
		}
		for _, n := range names {
			runs = append(runs, s.newRun(job.Name, n, trigger))
		}
	}
	specs := make([]string, len(runs))
	for i, r := range runs {
		specs[i] = r.VM
		s.update(r, func(r *RunRecord) { r.State, r.Start = StateRunning, time.Now().UTC() })
		log.Info("backup started", "vm", r.VM, "run", r.ID, "trigger", trigger)
	}
	outs := backupd.BackupVMs(ctx, s.repo, conn, specs, opts, backupd.ParallelOptions{VMs: job.Parallel})
	for i, o := range outs {
		r := runs[i]
		vlog := log.With("vm", r.VM, "run", r.ID)
		if o.Err != nil {
			vlog.Error("backup failed", "error", o.Err)
			s.finish(r, start, o.Err)
			s.metrics.jobFailed(job.Name)
			continue
		}
		s.update(r, func(r *RunRecord) { r.Point = o.Result.PointID })
		vlog.Info("backup done", "point", o.Result.PointID, "bytes_read", o.Result.BytesRead(), "bytes_written", o.Result.BytesWritten())
		s.metrics.jobDone(job.Name, r.VM, time.Since(r.Start))
		if !job.Retention.IsZero() {
			pr, err := s.repo.Prune(ctx, r.VM, job.Retention, false)
			if err != nil {
				vlog.Error("retention failed", "error", err)
			} else {
				s.update(r, func(r *RunRecord) { r.Pruned = len(pr.Deleted) })
				if len(pr.Deleted) > 0 {
					vlog.Info("retention applied", "kept", len(pr.Kept), "deleted", len(pr.Deleted))
				}
			}
		}
		s.finish(r, start, nil)
	}
	s.updateRepoMetrics(ctx)
}

func (s *Server) finish(r *RunRecord, start time.Time, err error) {
	s.update(r, func(r *RunRecord) {
		if r.Start.IsZero() {
			r.Start = start.UTC()
		}
		r.End = time.Now().UTC()
		r.State = StateOK
		if err != nil {
			r.State, r.Error = StateFailed, err.Error()
		}
	})
}

// connect logs in to vc and builds the job options of job.
func (s *Server) connect(ctx context.Context, vc *VCenter, job Job, log *slog.Logger) (*vsphere.Conn, backupd.JobOptions, error) {
	var opts backupd.JobOptions
	creds, err := vsphere.LoadCredentials(vc.Credentials)
	if err != nil {
		return nil, opts, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := vsphere.Connect(cctx, vsphere.ConnectOptions{
		URL: vc.URL, Credentials: creds, Thumbprint: vc.Thumbprint, Insecure: vc.Insecure, Logger: log,
	})
	if err != nil {
		return nil, opts, err
	}
	opts = backupd.JobOptions{
		Transports: job.Transports, NBDCommand: job.NBDCommand, Quiesce: job.Quiesce,
		Credentials: creds, Thumbprint: vc.Thumbprint, Logger: log,
	}
	if opts.NBDCommand == "" {
		opts.NBDCommand = backupd.DefaultNBDCommand
	}
	opts.NBD.Retries = 5
	opts.NBD.StallTimeout = 60 * time.Second
	return conn, opts, nil
}

// matchVMs lists the vCenter's VMs and returns the names matching any of
// the patterns (path.Match), sorted and without duplicates.
func matchVMs(ctx context.Context, conn *vsphere.Conn, patterns []string) ([]string, error) {
	f := find.NewFinder(conn.Client, true)
	dcs, err := f.DatacenterList(ctx, "*")
	if err != nil {
		return nil, fmt.Errorf("list datacenters: %w", err)
	}
	seen := map[string]bool{}
	for _, dc := range dcs {
		f.SetDatacenter(dc)
		vms, err := f.VirtualMachineList(ctx, "*")
		if err != nil {
			if _, ok := err.(*find.NotFoundError); ok {
				continue
			}
			return nil, fmt.Errorf("list VMs of %s: %w", dc.Name(), err)
		}
		for _, vm := range vms {
			name := vm.Name()
			for _, p := range patterns {
				if ok, _ := path.Match(p, name); ok {
					seen[name] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

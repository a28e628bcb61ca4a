package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/notify"
)

// StateSkipped is a run a pre hook skipped (on_failure: skip): no
// failure, nothing backed up; its Error names the hook and its last
// output line.
const StateSkipped = backupd.JobSkipped

// withHooks gives a run's backup the job's per-VM hooks, each result
// recorded in the run (r.Hooks).
func (s *Server) withHooks(opts backupd.JobOptions, job Job, r *RunRecord) backupd.JobOptions {
	h := job.Hooks.VMHooks(job.Name)
	if h == nil {
		return opts
	}
	h.Record = func(res backupd.HookResult) {
		s.update(r, func(r *RunRecord) { r.Hooks = append(r.Hooks, res) })
	}
	opts.Hooks = h
	return opts
}

// preJob runs the job's pre_job hooks before its VMs; each result is
// recorded in every run of the job run. It returns the error that ends
// the run (a hook with on_failure fail or skip) and the warnings of
// failed hooks with on_failure warn.
func (s *Server) preJob(ctx context.Context, job Job, runs []*RunRecord, log *slog.Logger) backupd.HookOutcome {
	if job.Hooks == nil || len(job.Hooks.PreJob) == 0 {
		return backupd.HookOutcome{}
	}
	o := backupd.RunPreHooks(ctx, job.Hooks.PreJob, backupd.HookEnv{Job: job.Name}, log, s.recordJobHook(runs))
	for _, r := range runs {
		s.update(r, func(r *RunRecord) { r.Warnings = append(r.Warnings, o.Warnings...) })
	}
	return o
}

// postJob runs the job's post_job hooks once its VMs are done, with the
// run's result (CAIRN_RESULT ok, failed, skipped or cancelled); a failed
// post_job hook is logged, recorded and told as a backup warning.
func (s *Server) postJob(ctx context.Context, job Job, runs []*RunRecord, log *slog.Logger) {
	if job.Hooks.Empty() {
		return
	}
	defer s.setHookFailures(job.Name, runs)
	if len(job.Hooks.PostJob) == 0 {
		return
	}
	env := backupd.HookEnv{Job: job.Name, Result: backupd.JobOK}
	var errs []string
	s.mu.Lock()
	for _, r := range runs {
		switch r.State {
		case StateFailed:
			env.Result = backupd.JobFailed
			errs = append(errs, r.VM+": "+r.Error)
		case StateCancelled:
			if env.Result != backupd.JobFailed {
				env.Result = backupd.JobCancelled
			}
		case StateSkipped:
			if env.Result == backupd.JobOK {
				env.Result = backupd.JobSkipped
			}
		case StateOK:
			if len(r.Warnings) > 0 && env.Result == backupd.JobOK {
				env.Result = "warnings"
			}
		}
	}
	s.mu.Unlock()
	env.Error = strings.Join(errs, "; ")
	warns := backupd.RunPostHooks(ctx, job.Hooks.PostJob, env, log, s.recordJobHook(runs))
	if len(warns) > 0 {
		s.tell(notify.Event{Kind: notify.BackupWarning, Severity: notify.Warning, Job: job.Name, VM: "*", Error: strings.Join(warns, "; "),
			Summary: fmt.Sprintf("post_job hook of job %s failed", job.Name)})
	}
}

// setHookFailures sets the job's LastHookFailures (/api/v1/status) from
// the hooks its runs recorded, each failure once.
func (s *Server) setHookFailures(job string, runs []*RunRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fails []string
	seen := map[string]bool{}
	for _, r := range runs {
		for _, h := range r.Hooks {
			if sum := h.Summary(); h.Failed() && !seen[sum] {
				seen[sum] = true
				fails = append(fails, sum)
			}
		}
	}
	s.jobStatus(job).LastHookFailures = fails
}

func (s *Server) recordJobHook(runs []*RunRecord) func(backupd.HookResult) {
	return func(res backupd.HookResult) {
		for _, r := range runs {
			s.update(r, func(r *RunRecord) { r.Hooks = append(r.Hooks, res) })
		}
	}
}

// skippedByHook reports whether err is a pre hook's skip.
func skippedByHook(err error) bool { return errors.Is(err, backupd.ErrSkippedByHook) }

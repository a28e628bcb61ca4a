package backupd

import "context"

// The hook seam of a VM's backup: pre_snapshot before the snapshot,
// post_snapshot right after it exists (or failed to), post_backup after
// the point is committed or the backup failed.

func (j *vmJob) hookEnv() HookEnv {
	e := HookEnv{VM: j.spec}
	if j.opts.Hooks != nil {
		e.Job = j.opts.Hooks.Job
	}
	if j.vm != nil {
		e.VM, e.MoRef = j.vm.Name, j.vm.Ref.Value
	}
	return e
}

func (j *vmJob) recordHook(r HookResult) {
	j.hooks = append(j.hooks, r)
	if j.opts.Hooks.Record != nil {
		j.opts.Hooks.Record(r)
	}
}

// preSnapshot runs the pre_snapshot hooks; a failing one with policy fail
// or skip ends the backup before any snapshot.
func (j *vmJob) preSnapshot(ctx context.Context) error {
	if j.opts.Hooks.Empty() {
		return nil
	}
	o := RunPreHooks(ctx, j.opts.Hooks.PreSnapshot, j.hookEnv(), j.log, j.recordHook)
	j.hookWarnings = append(j.hookWarnings, o.Warnings...)
	return o.Err
}

// postSnapshot runs the post_snapshot hooks (thaw) whatever happened to
// the snapshot and whether or not ctx is cancelled: an application frozen
// by pre_snapshot is never left frozen. A failure is a warning.
func (j *vmJob) postSnapshot(ctx context.Context, snapErr error) {
	if j.opts.Hooks.Empty() || len(j.opts.Hooks.PostSnapshot) == 0 {
		return
	}
	e := j.hookEnv()
	e.Result = "ok"
	if snapErr != nil {
		e.Result, e.Error = EndState(Cancelled(ctx, snapErr)), snapErr.Error()
	}
	j.hookWarnings = append(j.hookWarnings, RunPostHooks(ctx, j.opts.Hooks.PostSnapshot, e, j.log, j.recordHook)...)
}

// postBackup runs the post_backup hooks with the backup's result
// (CAIRN_RESULT ok, warnings, failed, cancelled or skipped); their
// failures are warnings of the result.
func (j *vmJob) postBackup(ctx context.Context, res *Result, err error) *Result {
	if !j.opts.Hooks.Empty() && len(j.opts.Hooks.PostBackup) > 0 {
		e := j.hookEnv()
		switch {
		case err != nil:
			e.Result, e.Error = EndState(Cancelled(ctx, err)), err.Error()
		case len(res.Warnings) > 0:
			e.Result, e.Point = "warnings", res.PointID
		default:
			e.Result, e.Point = JobOK, res.PointID
		}
		w := RunPostHooks(ctx, j.opts.Hooks.PostBackup, e, j.log, j.recordHook)
		j.hookWarnings = append(j.hookWarnings, w...)
		if res != nil {
			res.Warnings = append(res.Warnings, w...)
		}
	}
	if res != nil {
		res.Hooks = j.hooks
	}
	return res
}

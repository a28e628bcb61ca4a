package serve

import (
	"path"

	"github.com/cairnbackup/cairn/blockmap"
)

// retentionFor is the policy applied to vm after job backed it up: the
// union of the retentions of every job that may back the VM up, so that
// one job's short retention never deletes the points another job keeps
// (an hourly job with keep_last: 24 beside a nightly one with
// keep_daily: 30). A point is kept when any of them keeps it; a job
// without retention keeps every point. A job selecting by folder or tag
// whose selection is not known yet (it has not run since the server
// started or reloaded) is counted: what is not known is kept. The zero
// Policy means: prune nothing. others names the jobs besides job.
func (s *Server) retentionFor(cfg *Config, job Job, vm string) (pol blockmap.Policy, others []string) {
	pol = job.Retention
	if pol.IsZero() {
		return pol, nil
	}
	for _, o := range cfg.Jobs {
		if o.Name == job.Name || !o.BacksUp() || !s.mightSelect(o, vm) {
			continue
		}
		others = append(others, o.Name)
		if o.Retention.IsZero() {
			return blockmap.Policy{}, others
		}
		pol = unionPolicy(pol, o.Retention)
	}
	return pol, others
}

// mightSelect reports whether job o selects vm or may select it: by name,
// or by folder or tag in its last known selection, or when that selection
// is not known.
func (s *Server) mightSelect(o Job, vm string) bool {
	for _, p := range o.Exclude {
		if ok, _ := path.Match(p, vm); ok {
			return false
		}
	}
	if o.SelectsByName(vm) {
		return true
	}
	if len(o.Folders)+len(o.Tags) == 0 {
		return false
	}
	names, known := s.inv.known(o.Name)
	return !known || names[vm]
}

// unionPolicy keeps every point a or b keeps: each rule takes the newest
// point of its N most recent buckets, so the larger N keeps a superset.
func unionPolicy(a, b blockmap.Policy) blockmap.Policy {
	return blockmap.Policy{
		KeepLast: max(a.KeepLast, b.KeepLast), KeepHourly: max(a.KeepHourly, b.KeepHourly),
		KeepDaily: max(a.KeepDaily, b.KeepDaily), KeepWeekly: max(a.KeepWeekly, b.KeepWeekly),
		KeepMonthly: max(a.KeepMonthly, b.KeepMonthly),
	}
}

package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/schedule"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/ratelimit"
)

// Replicate is a job's replicate: section: copy the job's VMs' points to
// an offsite remote (registered in the repository with cairn remote add)
// on a schedule, after every backup run, or both; then apply the remote's
// own retention and, on its verify schedule, read the remote back.
type Replicate struct {
	Remote      string
	Schedule    schedule.Schedule // nil: not on a schedule
	AfterBackup bool              // after each backup run that committed a point
	Retention   blockmap.Policy   // the remote's retention (zero: keep every point)
	// Verify reads the remote back on this schedule (nil: never), every
	// pack or a VerifySample percentage of them.
	Verify       schedule.Schedule
	VerifySample float64
	// Limit caps the bandwidth of the job's replication runs (limit_rate,
	// limit_rate_hours): nil keeps the remote's default (cairn remote add
	// --limit-rate); a Rate of ratelimit.Unlimited lifts it.
	Limit *ratelimit.Schedule
}

// OpenedRemote is a remote opened for the server by its RemoteOpener.
type OpenedRemote struct {
	Remote *remote.Remote
	// CacheDir is this machine's cache of the remote (pack indexes, the
	// points it copied): remote.ReplicateOptions.CacheDir.
	CacheDir string
	// AfterReplicate, when set, runs after each successful replication
	// (the CLI's retention extension of an immutable remote).
	AfterReplicate func(ctx context.Context) error
	// Release closes the remote and drops this machine's lock of it.
	Release func()
}

// RemoteOpener opens remote name of the repository at repoDir; with
// exclusive (replication, verify) it first takes this machine's lock of
// the remote, waiting while a CLI replicate or prune holds it (reads for
// the API do not wait). cmd/cairn provides it: the remotes' configuration
// and secrets are the CLI's.
type RemoteOpener func(ctx context.Context, repoDir, name string, exclusive bool) (*OpenedRemote, error)

// ReplicationRecord is one replication run of /api/v1/replications.
type ReplicationRecord struct {
	ID      string    `json:"id"`
	Job     string    `json:"job"`
	Remote  string    `json:"remote"`
	Kind    string    `json:"kind"`    // replicate or verify
	Trigger string    `json:"trigger"` // schedule or after_backup
	VMs     []string  `json:"vms,omitempty"`
	State   string    `json:"state"` // running, ok, failed
	Start   time.Time `json:"start"`
	End     time.Time `json:"end,omitzero"`
	// Replicated and Present count the points copied and those the remote
	// already had; Pruned the remote points the retention deleted.
	Replicated    int   `json:"points_replicated"`
	Present       int   `json:"points_present"`
	Pruned        int   `json:"points_pruned"`
	BytesUploaded int64 `json:"bytes_uploaded"`
	Objects       int64 `json:"objects_written"`
	// BytesRead are the bytes of local blocks the run read (blocks an
	// earlier copied or pulled point holds unchanged are not read).
	BytesRead int64 `json:"bytes_read"`
	// VerifyErrors counts what a verify found wrong (objects and blocks).
	VerifyErrors int    `json:"verify_errors,omitempty"`
	Error        string `json:"error,omitempty"`
}

// replications is the server's replication state.
type replications struct {
	mu   sync.Mutex
	runs []*ReplicationRecord // newest last, at most maxRuns
	busy map[string]chan struct{}
	// offsite is, per remote and VM, the ids of the local points known to
	// be on the remote (learned from replication runs since the start).
	offsite map[string]map[string]map[string]bool
	// lagVMs are the VMs whose lag the metric reports, by remote.
	lagVMs map[string]map[string]bool
}

func newReplications() *replications {
	return &replications{busy: map[string]chan struct{}{}, offsite: map[string]map[string]map[string]bool{}, lagVMs: map[string]map[string]bool{}}
}

// lock serializes the runs of one remote within the server.
func (rs *replications) lock(ctx context.Context, name string) (func(), error) {
	rs.mu.Lock()
	ch := rs.busy[name]
	if ch == nil {
		ch = make(chan struct{}, 1)
		rs.busy[name] = ch
	}
	rs.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (rs *replications) add(r *ReplicationRecord) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.runs = append(rs.runs, r)
	if len(rs.runs) > maxRuns {
		rs.runs = rs.runs[len(rs.runs)-maxRuns:]
	}
}

func (rs *replications) update(r *ReplicationRecord, f func(*ReplicationRecord)) {
	rs.mu.Lock()
	f(r)
	rs.mu.Unlock()
}

// Replications returns copies of the recorded replication runs, oldest first.
func (s *Server) Replications() []ReplicationRecord {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	out := make([]ReplicationRecord, len(s.repl.runs))
	for i, r := range s.repl.runs {
		out[i] = *r
		out[i].VMs = append([]string(nil), r.VMs...)
	}
	return out
}

// remoteMetrics are the offsite tier's Prometheus metrics.
type remoteMetrics struct {
	uploaded     *prometheus.CounterVec
	objects      *prometheus.CounterVec
	verifyErrors *prometheus.CounterVec
	runs         *prometheus.CounterVec
	lag          *prometheus.Desc
}

func (s *Server) registerRemoteMetrics(reg *prometheus.Registry) {
	m := &remoteMetrics{
		uploaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_remote_bytes_uploaded_total", Help: "Bytes written to the remote's object store (packs, indexes, manifests).",
		}, []string{"remote"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_remote_objects_total", Help: "Objects written to the remote's object store.",
		}, []string{"remote"}),
		verifyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_remote_verify_errors_total", Help: "Damaged or missing objects and blocks found by verifies of the remote.",
		}, []string{"remote"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_remote_runs_total", Help: "Replication and remote verify runs, by kind and result (ok, failed).",
		}, []string{"remote", "kind", "result"}),
		lag: prometheus.NewDesc("cairn_remote_replication_lag_seconds",
			"How long the VM's oldest local point newer than its newest point on the remote has waited (0: the newest local point is offsite); reported once a replication run of the VM's job has ended since the server started.",
			[]string{"remote", "vm"}, nil),
	}
	s.rmetrics = m
	reg.MustRegister(m.uploaded, m.objects, m.verifyErrors, m.runs, lagCollector{s})
}

// lagCollector computes the replication lag when scraped: it grows while
// replication fails or waits.
type lagCollector struct{ s *Server }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.s.rmetrics.lag }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	if s.repo == nil {
		return
	}
	s.repl.mu.Lock()
	type key struct{ remote, vm string }
	known := map[key]map[string]bool{}
	for rem, vms := range s.repl.lagVMs {
		for vm := range vms {
			ids := map[string]bool{}
			for id := range s.repl.offsite[rem][vm] {
				ids[id] = true
			}
			known[key{rem, vm}] = ids
		}
	}
	s.repl.mu.Unlock()
	if len(known) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	for k, ids := range known {
		lag := 0.0
		for _, v := range cat {
			if v.Name != k.vm {
				continue
			}
			// Points are oldest first. The lag is how long the oldest point
			// newer than the newest offsite one has waited; older points
			// missing from the remote were pruned there.
			for i := len(v.Points) - 1; i >= 0 && !ids[v.Points[i].ID]; i-- {
				lag = max(0, now.Sub(v.Points[i].Time).Seconds())
			}
		}
		ch <- prometheus.MustNewConstMetric(s.rmetrics.lag, prometheus.GaugeValue, lag, k.remote, k.vm)
	}
}

// startReplications starts the timers of the jobs' replicate and remote
// verify schedules.
func (s *Server) startReplications(ctx context.Context, cfg *Config, wg *sync.WaitGroup) {
	for _, j := range cfg.Jobs {
		rc := j.Replicate
		if rc == nil {
			continue
		}
		// A job that only replicates has no backup schedule: its next
		// run in the status (cairn status, the console) is the
		// replication's, its schedule "replicate <schedule>".
		var onNext func(time.Time)
		if !j.BacksUp() && rc.Schedule != nil {
			onNext = func(next time.Time) { s.setNextRun(j.Name, "replicate "+rc.Schedule.String(), next) }
		}
		for _, sc := range []struct {
			key    string
			sched  schedule.Schedule
			run    func(context.Context)
			onNext func(time.Time)
		}{
			{"replicate/" + j.Name, rc.Schedule, func(ctx context.Context) { s.replicateJob(ctx, cfg, j, nil, "schedule") }, onNext},
			{"remote-verify/" + j.Name, rc.Verify, func(ctx context.Context) { s.verifyRemote(ctx, j) }, nil},
		} {
			if sc.sched == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runOnSchedule(ctx, sc.key, sc.sched, true, sc.onNext, sc.run)
			}()
		}
	}
}

// replicateAfterBackup runs a job's replication after a backup run that
// committed points of vms, when the job asks for it.
func (s *Server) replicateAfterBackup(ctx context.Context, cfg *Config, job Job, vms []string) {
	if job.Replicate == nil || !job.Replicate.AfterBackup || len(vms) == 0 || ctx.Err() != nil {
		return
	}
	s.replicateJob(ctx, cfg, job, vms, "after_backup")
}

// jobVMs are the VMs of a job with local points: those its name patterns
// select and those its last selection chose (folders and tags).
func (s *Server) jobVMs(ctx context.Context, job Job) ([]string, error) {
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	chosen := s.inv.job(job.Name)
	chosen.mu.Lock()
	names := chosen.names
	chosen.mu.Unlock()
	var out []string
	for _, v := range cat {
		if job.SelectsByName(v.Name) || names[v.Name] {
			out = append(out, v.Name)
		}
	}
	return out, nil
}

// replicateJob copies the local points of the job's VMs (vms, or all of
// them when nil) that the remote lacks, then applies the remote's
// retention to those VMs. The run is recorded and logged; a failure is
// retried at the next time (packs already stored are not uploaded again).
func (s *Server) replicateJob(ctx context.Context, cfg *Config, job Job, vms []string, trigger string) {
	rc := job.Replicate
	rec := &ReplicationRecord{ID: backupd.NewJobID(), Job: job.Name, Remote: rc.Remote, Kind: "replicate", Trigger: trigger, State: StateRunning, Start: time.Now().UTC()}
	log := s.log.With("job_name", job.Name, "remote", rc.Remote, "replication", rec.ID)
	s.repl.add(rec)
	endJob := s.startReplicationJob(rec) // replicate_jobs.go
	err := s.replicateRun(ctx, job, vms, rec, log)
	endJob(backupd.Cancelled(ctx, err)) // before the API shows the run ended
	s.endReplication(rec, err, log)
}

func (s *Server) endReplication(rec *ReplicationRecord, err error, log *slog.Logger) {
	result := "ok"
	s.repl.update(rec, func(r *ReplicationRecord) {
		r.End, r.State = time.Now().UTC(), StateOK
		if err != nil {
			r.State, r.Error = StateFailed, err.Error()
			if errors.Is(err, context.Canceled) {
				r.State = StateCancelled // the server stops
			}
		}
	})
	if err != nil {
		result = "failed"
		if errors.Is(err, context.Canceled) {
			result = "cancelled" // the server stops: no failure (and no notification)
		}
		log.Error(rec.Kind+" of the remote failed; it runs again at its next time", "error", err)
		s.tellReplicationFailed(rec, err)
	} else {
		log.Info(rec.Kind+" of the remote done", "points_replicated", rec.Replicated, "points_present", rec.Present,
			"points_pruned", rec.Pruned, "bytes_uploaded", rec.BytesUploaded, "verify_errors", rec.VerifyErrors)
	}
	s.rmetrics.runs.WithLabelValues(rec.Remote, rec.Kind, result).Inc()
}

func (s *Server) openRemote(ctx context.Context, name string) (*OpenedRemote, func(), error) {
	if s.remotes == nil {
		return nil, nil, errors.New("this server cannot open remotes (no RemoteOpener)")
	}
	unlock, err := s.repl.lock(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	o, err := s.remotes(ctx, s.repo.Dir(), name, true)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return o, func() { o.Release(); unlock() }, nil
}

func (s *Server) replicateRun(ctx context.Context, job Job, vms []string, rec *ReplicationRecord, log *slog.Logger) error {
	rc := job.Replicate
	if vms == nil {
		var err error
		if vms, err = s.jobVMs(ctx, job); err != nil {
			return err
		}
	}
	sort.Strings(vms)
	s.repl.update(rec, func(r *ReplicationRecord) { r.VMs = vms })
	o, release, err := s.openRemote(ctx, rc.Remote)
	if err != nil {
		return err
	}
	defer release()
	want := map[string]bool{}
	for _, vm := range vms {
		want[vm] = true
	}
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		return err
	}
	var pts []blockmap.Point
	skipped := 0
	guard := s.pruneGuard(log) // a VM's last clean point goes offsite and stays there
	for _, v := range cat {
		if want[v.Name] {
			kept := keptByRemoteRetention(rc.Retention, v.Points, guard)
			skipped += len(v.Points) - len(kept)
			pts = append(pts, kept...)
		}
	}
	log.Info("replication started", "vms", len(vms), "local_points", len(pts), "outside_remote_retention", skipped, "limit_rate", applyLimit(o.Remote, rc))
	st, err := o.Remote.Replicate(ctx, s.repo, pts, remote.ReplicateOptions{CacheDir: o.CacheDir})
	if st != nil {
		objects := 2*st.Packs + st.Maps + int64(len(st.Replicated))
		s.rmetrics.uploaded.WithLabelValues(rc.Remote).Add(float64(st.BytesUploaded))
		s.rmetrics.objects.WithLabelValues(rc.Remote).Add(float64(objects))
		s.repl.update(rec, func(r *ReplicationRecord) {
			r.Replicated, r.Present, r.BytesUploaded, r.Objects = len(st.Replicated), len(st.Present), st.BytesUploaded, objects
			r.BytesRead = st.BytesRead
		})
		s.learnOffsite(rc.Remote, vms, append(st.Replicated, st.Present...))
	}
	if err != nil {
		return err
	}
	if o.AfterReplicate != nil {
		if err := o.AfterReplicate(ctx); err != nil {
			return fmt.Errorf("replicated, but %w", err)
		}
	}
	if rc.Retention.IsZero() {
		return nil
	}
	var errs []error
	for _, vm := range vms {
		pr, err := o.Remote.PruneWith(ctx, vm, rc.Retention, false, guard)
		if errors.Is(err, blockmap.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remote retention of %s: %w", vm, err))
			continue
		}
		logProtected(log, &blockmap.PruneResult{Protected: pr.Protected})
		s.repl.update(rec, func(r *ReplicationRecord) { r.Pruned += len(pr.Deleted) })
		s.forgetOffsite(rc.Remote, vm, pr.Deleted)
	}
	return errors.Join(errs...)
}

// learnOffsite records points as present on remote name, and that the lag
// of vms is now known.
func (s *Server) learnOffsite(name string, vms []string, pts []blockmap.Point) {
	rs := s.repl
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.offsite[name] == nil {
		rs.offsite[name] = map[string]map[string]bool{}
		rs.lagVMs[name] = map[string]bool{}
	}
	for _, vm := range vms {
		rs.lagVMs[name][vm] = true
		if rs.offsite[name][vm] == nil {
			rs.offsite[name][vm] = map[string]bool{}
		}
	}
	for _, p := range pts {
		if rs.offsite[name][p.VM] != nil {
			rs.offsite[name][p.VM][p.ID] = true
		}
	}
}

func (s *Server) forgetOffsite(name, vm string, deleted []blockmap.Point) {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	for _, p := range deleted {
		delete(s.repl.offsite[name][vm], p.ID)
	}
}

// verifyRemote reads the job's remote back (every pack, or the sample).
func (s *Server) verifyRemote(ctx context.Context, job Job) {
	rc := job.Replicate
	rec := &ReplicationRecord{ID: backupd.NewJobID(), Job: job.Name, Remote: rc.Remote, Kind: "verify", Trigger: "schedule", State: StateRunning, Start: time.Now().UTC()}
	log := s.log.With("job_name", job.Name, "remote", rc.Remote, "replication", rec.ID)
	s.repl.add(rec)
	endJob := s.startVerifyJob(rec)
	err := func() error {
		o, release, err := s.openRemote(ctx, rc.Remote)
		if err != nil {
			return err
		}
		defer release()
		log.Info("remote verify started", "limit_rate", applyLimit(o.Remote, rc))
		rep, err := o.Remote.Verify(ctx, remote.VerifyOptions{SamplePercent: rc.VerifySample})
		if err != nil {
			return err
		}
		bad := len(rep.BadObjects) + len(rep.BadBlocks)
		s.repl.update(rec, func(r *ReplicationRecord) { r.VerifyErrors = bad })
		s.rmetrics.verifyErrors.WithLabelValues(rc.Remote).Add(float64(bad))
		for _, b := range rep.BadObjects {
			log.Error("remote verify: object cannot be read", "object", b.Object, "error", b.Err)
		}
		for _, b := range rep.BadBlocks {
			log.Error("remote verify: block cannot be read back", "vm", b.VM, "point", b.Point, "disk", b.Disk, "offset", b.Offset)
		}
		if bad > 0 {
			return fmt.Errorf("the remote holds %d damaged or missing objects and blocks (damaged points: %s)", bad, strings.Join(rep.BadPoints, ", "))
		}
		return nil
	}()
	endJob(backupd.Cancelled(ctx, err))
	s.endReplication(rec, err, log)
}

// handleReplications answers GET /api/v1/replications.
func (s *Server) handleReplications(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"replications": s.Replications()})
}

// handleRemotePoints answers GET /api/v1/remotes/{name}/points: the
// remote's points (of ?vm=NAME only) and the manifests it cannot read.
func (s *Server) handleRemotePoints(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	o, ctx, release, ok := s.openAPIRemote(w, r) // remote_stats.go
	if !ok {
		return
	}
	defer release()
	pts, bad, err := o.Remote.Points(ctx)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	if vm := r.URL.Query().Get("vm"); vm != "" {
		var sel []blockmap.Point
		for _, p := range pts {
			if p.VM == vm {
				sel = append(sel, p)
			}
		}
		pts = sel
	}
	writeJSON(w, http.StatusOK, NewRemotePoints(name, pts, bad))
}

// ErrUnknownRemote is returned by a RemoteOpener for a name the
// repository has no remote of.
var ErrUnknownRemote = errors.New("unknown remote")

// parseReplicate reads a job's replicate: section.
func (p *parser) replicate(n *yaml.Node, what string, cfg *Config) (*Replicate, error) {
	m, err := p.fields(n, what+": replicate", "remote", "schedule", "after_backup", "retention", "verify", "verify_sample", "limit_rate", "limit_rate_hours")
	if err != nil {
		return nil, err
	}
	rc := &Replicate{}
	what += ": replicate"
	if rc.Remote, err = p.str(m, "remote", what, true, n); err != nil {
		return nil, err
	}
	if err := blockmap.ValidateName("remote", rc.Remote); err != nil {
		return nil, p.errf(m["remote"], "%s: %v", what, err)
	}
	for key, dst := range map[string]*schedule.Schedule{"schedule": &rc.Schedule, "verify": &rc.Verify} {
		spec, err := p.str(m, key, what, false, n)
		if err != nil {
			return nil, err
		}
		if spec == "" {
			continue
		}
		if *dst, err = schedule.Parse(spec, cfg.Location); err != nil {
			return nil, p.errf(m[key], "%s: %s: %v", what, key, err)
		}
	}
	if v := m["after_backup"]; v != nil {
		if err := v.Decode(&rc.AfterBackup); err != nil {
			return nil, p.errf(v, "%s: after_backup: want true or false", what)
		}
	}
	if rc.Schedule == nil && !rc.AfterBackup {
		return nil, p.errf(n, "%s: say when: schedule: (an interval like 6h or a cron expression) or after_backup: true", what)
	}
	if r := m["retention"]; r != nil {
		if rc.Retention, err = p.retention(r, what); err != nil {
			return nil, err
		}
	}
	if v := m["verify_sample"]; v != nil {
		s := strings.TrimSuffix(strings.TrimSpace(v.Value), "%")
		if _, err := fmt.Sscanf(s, "%g", &rc.VerifySample); err != nil || v.Kind != yaml.ScalarNode || rc.VerifySample <= 0 || rc.VerifySample > 100 {
			return nil, p.errf(v, "%s: verify_sample %q: want a percentage in (0, 100], like 10%%", what, v.Value)
		}
		if rc.Verify == nil {
			return nil, p.errf(v, "%s: verify_sample needs verify: SCHEDULE", what)
		}
	}
	if rc.Limit, err = p.limitRate(m, what, cfg); err != nil {
		return nil, err
	}
	return rc, nil
}

// committedVMs are the VMs of runs that committed a point.
func committedVMs(runs []*RunRecord) []string {
	var out []string
	for _, r := range runs {
		if r.Point != "" {
			out = append(out, r.VM)
		}
	}
	return out
}

// applyLimit gives a run of the job's remote the job's limit, when it has
// one (else the remote's default stays), and says what the run's limit is.
func applyLimit(rem *remote.Remote, rc *Replicate) string {
	if rc.Limit != nil {
		var l *ratelimit.Limiter
		if rc.Limit.Rate != ratelimit.Unlimited {
			l = ratelimit.New(*rc.Limit)
		}
		rem.SetLimiter(l)
	}
	if l := rem.Limiter(); l != nil {
		return l.Schedule().String()
	}
	return "unlimited"
}

// limitRate reads a replicate: section's limit_rate and limit_rate_hours
// (nil: neither given).
func (p *parser) limitRate(m map[string]*yaml.Node, what string, cfg *Config) (*ratelimit.Schedule, error) {
	rn, hn := m["limit_rate"], m["limit_rate_hours"]
	if rn == nil {
		if hn != nil {
			return nil, p.errf(hn, "%s: limit_rate_hours needs limit_rate: RATE (e.g. limit_rate: 50M)", what)
		}
		return nil, nil
	}
	if rn.Kind != yaml.ScalarNode {
		return nil, p.errf(rn, "%s: limit_rate: want a rate like %s", what, ratelimit.RateExample)
	}
	r, err := ratelimit.ParseRate(rn.Value)
	if err != nil {
		return nil, p.errf(rn, "%s: limit_rate: %v", what, err)
	}
	s := &ratelimit.Schedule{Rate: r, Location: cfg.Location}
	if hn != nil {
		if r == ratelimit.Unlimited {
			return nil, p.errf(hn, "%s: limit_rate_hours with limit_rate: unlimited limits nothing: give a rate (e.g. limit_rate: 50M) or drop limit_rate_hours", what)
		}
		if hn.Kind != yaml.ScalarNode {
			return nil, p.errf(hn, "%s: limit_rate_hours: want windows like %s", what, ratelimit.WindowExample)
		}
		if s.Windows, err = ratelimit.ParseWindows(hn.Value); err != nil {
			return nil, p.errf(hn, "%s: limit_rate_hours: %v", what, err)
		}
	}
	return s, nil
}

package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// notifyState is the server's notifier (replaced on reload) and its RPO
// tracker (kept across reloads, so a reload does not re-alert); what
// they know is kept in file (NotifyStateFileName) across restarts.
type notifyState struct {
	mu       sync.Mutex
	notifier *notify.Notifier
	rpo      *notify.RPOTracker
	file     string        // "": not kept
	saved    *notify.State // the state last read or written
	saveMu   sync.Mutex    // serializes saveNotifyState
	written  []byte        // what file holds (under saveMu)
	writes   int           // times file was written (under saveMu)
}

// startNotifier builds the notifier of cfg (none without notify:) and
// closes the one it replaces, letting it deliver what it holds.
func (s *Server) startNotifier(cfg *Config) {
	var n *notify.Notifier
	s.note.mu.Lock()
	prev, saved := s.note.notifier, s.note.saved
	s.note.mu.Unlock()
	if prev != nil { // a reload: de-duplication goes on
		st := prev.State()
		saved = &st
	}
	if cfg.Notify != nil {
		var err error
		n, err = notify.New(notify.Options{
			Targets: cfg.Notify.Targets, Retries: cfg.Notify.Retries, RetryDelay: cfg.Notify.RetryDelay,
			RepeatAfter: cfg.Notify.RepeatAfter, Logger: s.log.With("component", "notify"), Status: s.NotifyStatus(),
			State: saved,
		})
		if err != nil {
			s.log.Error("notifications are off: the notify: section cannot be used", "error", err)
		}
	}
	s.note.mu.Lock()
	old := s.note.notifier
	s.note.notifier = n
	if s.note.rpo == nil {
		s.note.rpo = notify.NewRPOTracker()
		if saved != nil {
			s.note.rpo.Restore(saved.RPOBreached, saved.RPONoPoint)
		}
	}
	s.note.mu.Unlock()
	if old != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			old.Close(ctx)
		}()
	}
}

// stopNotifier delivers what is queued for up to 10s and stops.
func (s *Server) stopNotifier() {
	s.saveNotifyState()
	s.note.mu.Lock()
	n := s.note.notifier
	s.note.notifier = nil
	s.note.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Close(ctx)
}

// tell queues ev for the notify targets; it never blocks.
func (s *Server) tell(ev notify.Event) {
	s.tellUnsaved(ev)
	s.saveNotifyState()
}

// tellUnsaved tells ev without saving the state: a caller telling many
// events at once (checkRPO) saves it once after them.
func (s *Server) tellUnsaved(ev notify.Event) {
	s.note.mu.Lock()
	n := s.note.notifier
	s.note.mu.Unlock()
	n.Notify(ev)
}

// NotifyStatus is each notify target's delivery status.
func (s *Server) NotifyStatus() []notify.TargetStatus {
	s.note.mu.Lock()
	n := s.note.notifier
	s.note.mu.Unlock()
	return n.Status()
}

// tellBackupFailed tells a VM's backup that failed after its retries
// (not one that a stopping server aborted).
func (s *Server) tellBackupFailed(ctx context.Context, job string, r *RunRecord, attempts int, err error) {
	if ctx.Err() != nil {
		return
	}
	what := "backup of " + r.VM + " failed"
	if r.VM == "*" {
		what = "the run could not start"
	}
	s.tell(notify.Event{Kind: notify.BackupFailed, Severity: notify.Failure, Job: job, VM: r.VM, Attempts: attempts, Error: err.Error(),
		Summary: fmt.Sprintf("%s (job %s)", what, job), Details: map[string]string{"run": r.ID}})
}

// tellBackupDone tells a committed backup: a warning when quiescing fell
// back to a crash-consistent snapshot or a disk had to be read whole for
// another reason than being new (CBT reset, changeId rejected), info
// otherwise.
func (s *Server) tellBackupDone(job Job, r *RunRecord, res *backupd.Result) {
	var warns []string
	if res.Consistency == vsphere.ConsistencyCrash && job.Quiesce != vsphere.QuiesceOff {
		warns = append(warns, "quiescing failed: the point is crash-consistent")
	}
	for _, d := range res.Disks {
		if d.Full && d.FullReason != "" && !strings.HasPrefix(d.FullReason, "first backup") {
			warns = append(warns, fmt.Sprintf("disk %s read whole: %s", d.Name, d.FullReason))
		}
	}
	warns = append(warns, res.Warnings...)
	ev := notify.Event{Kind: notify.BackupOK, Severity: notify.Info, Job: job.Name, VM: r.VM, Point: res.PointID,
		Summary: fmt.Sprintf("%s backed up (job %s)", r.VM, job.Name),
		Details: map[string]string{"bytes_read": fmt.Sprint(res.BytesRead()), "bytes_stored": fmt.Sprint(res.BytesWritten()), "consistency": res.Consistency}}
	if len(warns) > 0 {
		ev.Kind, ev.Severity, ev.Error = notify.BackupWarning, notify.Warning, strings.Join(warns, "; ")
		ev.Summary = fmt.Sprintf("%s backed up with warnings (job %s)", r.VM, job.Name)
	}
	s.tell(ev)
}

// startNotifySchedules starts the RPO checks and the report of cfg.
func (s *Server) startNotifySchedules(ctx context.Context, cfg *Config, wg *sync.WaitGroup) {
	nc := cfg.Notify
	if nc == nil {
		return
	}
	watch := false
	for i := range cfg.Jobs {
		watch = watch || cfg.Jobs[i].EffectiveRPO() > 0
	}
	if watch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				s.checkRPO(ctx, cfg)
				if !sleepUntil(ctx, time.Now().Add(nc.RPOCheck)) {
					return
				}
			}
		}()
	}
	if nc.Report != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if !sleepUntil(ctx, nc.Report.Next(time.Now())) {
					return
				}
				s.sendReport(ctx)
			}
		}()
	}
}

// checkRPO compares the newest point of every VM of every job that has
// an RPO with it, and tells breaches and recoveries.
func (s *Server) checkRPO(ctx context.Context, cfg *Config) {
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("RPO check: read the catalog", "error", err)
		}
		return
	}
	s.mu.Lock()
	watched := s.started
	s.mu.Unlock()
	var obs []notify.RPOObservation
	rpoJobs := map[string]bool{}
	for _, job := range cfg.Jobs {
		rpo := job.EffectiveRPO()
		if rpo <= 0 {
			continue
		}
		rpoJobs[job.Name] = true
		chosen := s.inv.job(job.Name)
		chosen.mu.Lock()
		vms := map[string]bool{}
		for v := range chosen.names {
			vms[v] = true
		}
		chosen.mu.Unlock()
		for _, v := range cat {
			if job.SelectsByName(v.Name) {
				vms[v.Name] = true
			}
		}
		for _, v := range cat {
			if !vms[v.Name] {
				continue
			}
			delete(vms, v.Name)
			o := notify.RPOObservation{Job: job.Name, VM: v.Name, RPO: rpo, Watched: watched}
			if p, ok := v.Latest(); ok {
				o.Latest, o.LatestPoint = p.Time, p.ID
			}
			obs = append(obs, o)
		}
		for vm := range vms { // selected, no point yet
			obs = append(obs, notify.RPOObservation{Job: job.Name, VM: vm, RPO: rpo, Watched: watched})
		}
	}
	s.note.mu.Lock()
	tr := s.note.rpo
	s.note.mu.Unlock()
	tr.Forget(rpoJobs)
	defer s.saveNotifyState()
	for _, ev := range tr.Observe(time.Now(), obs) {
		lvl := slog.LevelError
		if ev.Kind == notify.RPORecovered {
			lvl = slog.LevelInfo
		}
		s.log.Log(ctx, lvl, ev.Summary, "job_name", ev.Job, "vm", ev.VM, "point", ev.Point, "rpo", ev.Details["rpo"])
		s.tellUnsaved(ev) // saved once, by the deferred saveNotifyState
	}
}

// sendReport tells the summary of every VM: points, the newest, the
// result of its last backup or import, bytes stored.
func (s *Server) sendReport(ctx context.Context) {
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		s.log.Warn("notify report: read the catalog", "error", err)
		return
	}
	last := map[string]string{}
	if recs, err := backupd.NewJobLog(s.repo.Dir()).List(); err == nil {
		for _, r := range recs {
			if (r.Kind == "" || r.Kind == backupd.JobBackup || r.Kind == backupd.JobImport) && !r.End.IsZero() {
				last[r.VM] = r.State
				if r.Error != "" {
					last[r.VM] += ": " + r.Error
				}
			}
		}
	}
	ev := notify.Event{Kind: notify.Report, Severity: notify.Info, Summary: fmt.Sprintf("daily report: %d VMs", len(cat))}
	failed := 0
	for _, v := range cat {
		l := notify.ReportLine{VM: v.Name, Points: len(v.Points), LastResult: last[v.Name]}
		if p, ok := v.Latest(); ok {
			l.LastPoint, l.LastTime = p.ID, p.Time
		}
		for _, p := range v.Points {
			l.StoredBytes += p.StoredBytes()
		}
		if strings.HasPrefix(l.LastResult, backupd.JobFailed) {
			failed++
		}
		ev.Report = append(ev.Report, l)
	}
	if failed > 0 {
		ev.Summary += fmt.Sprintf(", %d failed last time", failed)
	}
	s.tell(ev)
}

// verifyDamageEvent tells the bad blocks a repository verify found.
func verifyDamageEvent(bad []blockmap.BadBlock) notify.Event {
	vms := map[string]int{}
	for _, b := range bad {
		vms[b.VM]++
	}
	var parts []string
	for _, vm := range sortedKeys(vms) {
		parts = append(parts, fmt.Sprintf("%s: %d", vm, vms[vm]))
	}
	ev := notify.Event{Kind: notify.VerifyDamage, Severity: notify.Failure,
		Error:   fmt.Sprintf("%d stored blocks do not match their hash (%s); cairn status lists them", len(bad), strings.Join(parts, ", ")),
		Summary: "repository verify found damaged blocks"}
	if len(vms) == 1 {
		ev.VM = bad[0].VM
	}
	return ev
}

// tellReplicationFailed tells a failed replicate or remote verify run.
func (s *Server) tellReplicationFailed(rec *ReplicationRecord, err error) {
	if errors.Is(err, context.Canceled) {
		return // the server stops
	}
	kind, what := notify.ReplicateFailed, "replication"
	if rec.Kind == "verify" {
		kind, what = notify.VerifyRemoteFailed, "remote verify"
	}
	s.tell(notify.Event{Kind: kind, Severity: notify.Failure, Job: rec.Job, Remote: rec.Remote, VM: strings.Join(rec.VMs, ","), Error: err.Error(),
		Summary: fmt.Sprintf("%s to %s failed (job %s)", what, rec.Remote, rec.Job)})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// notifyCollector reports the notify targets' deliveries when scraped,
// so that Prometheus can alert on the alerting itself.
type notifyCollector struct {
	s                           *Server
	sent, failed, dropped, rpoB *prometheus.Desc
}

func (s *Server) registerNotifyMetrics(reg *prometheus.Registry) {
	reg.MustRegister(notifyCollector{s: s,
		sent:    prometheus.NewDesc("cairn_notify_sent_total", "Notifications delivered, by target.", []string{"target"}, nil),
		failed:  prometheus.NewDesc("cairn_notify_failures_total", "Notifications given up after their retries, by target.", []string{"target"}, nil),
		dropped: prometheus.NewDesc("cairn_notify_dropped_total", "Notifications dropped because the target's queue was full.", []string{"target"}, nil),
		rpoB:    prometheus.NewDesc("cairn_rpo_breaches", "VMs whose newest point is older than their job's RPO (present with notify: and an RPO).", nil, nil),
	})
}

func (c notifyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sent
	ch <- c.failed
	ch <- c.dropped
	ch <- c.rpoB
}

func (c notifyCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.s.NotifyStatus() {
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(t.Sent), t.Name)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(t.Failed), t.Name)
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(t.Dropped), t.Name)
	}
	c.s.note.mu.Lock()
	tr := c.s.note.rpo
	c.s.note.mu.Unlock()
	if tr != nil {
		ch <- prometheus.MustNewConstMetric(c.rpoB, prometheus.GaugeValue, float64(tr.Breached()))
	}
}

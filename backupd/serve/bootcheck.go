package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/schedule"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// BootCheck is a job's boot_check: after each successful backup (and/or
// on Schedule: the newest point of each VM of the job that has no verdict
// yet), the point is booted headless and isolated and judged
// (backupd/boot.Verify). A failed check is logged and counted; it never
// fails the backup.
type BootCheck struct {
	AfterBackup bool
	Schedule    schedule.Schedule // nil: only after_backup
	Timeout     time.Duration     // default 10m
	Pattern     string            // serial-console RE meaning booted (default: a login prompt)
	MaxParallel int               // boot checks of this job at once (default 1)
	// Firmware ("bios" or "efi") boots points that carry no VM
	// configuration (imported without --vm-config); a point's own
	// configuration always wins.
	Firmware string
	// Checks are application checks run once the point booted
	// (backupd/boot.ParseCheck specs); booted only when all pass.
	Checks []string
	// CheckTimeout is how long each check may take (default 3m).
	CheckTimeout time.Duration
	pattern      *regexp.Regexp
	checks       []boot.Check
}

// bootCheck parses boot_check: {after_backup: true, schedule: CRON|interval,
// timeout: 10m, pattern: RE, max_parallel: 1, firmware: bios|efi,
// checks: [SPEC, ...], check_timeout: 3m}. With a schedule, after_backup
// defaults to false.
func (p *parser) bootCheck(n *yaml.Node, what string, cfg *Config) (*BootCheck, error) {
	what += ": boot_check"
	m, err := p.fields(n, what, "after_backup", "schedule", "timeout", "pattern", "max_parallel", "firmware", "checks", "check_timeout")
	if err != nil {
		return nil, err
	}
	bc := &BootCheck{AfterBackup: true, Timeout: 10 * time.Minute, MaxParallel: 1}
	if v := m["schedule"]; v != nil {
		if v.Kind != yaml.ScalarNode {
			return nil, p.errf(v, "%s: schedule: want an interval like 24h or a cron expression like \"0 4 * * *\"", what)
		}
		if bc.Schedule, err = schedule.Parse(v.Value, cfg.Location); err != nil {
			return nil, p.errf(v, "%s: %v", what, err)
		}
		bc.AfterBackup = false
	}
	if v := m["after_backup"]; v != nil {
		if err := v.Decode(&bc.AfterBackup); err != nil {
			return nil, p.errf(v, "%s: after_backup: want true or false", what)
		}
	}
	if v := m["timeout"]; v != nil {
		if bc.Timeout, err = time.ParseDuration(v.Value); err != nil || bc.Timeout <= 0 || v.Kind != yaml.ScalarNode {
			return nil, p.errf(v, "%s: timeout %q: want a duration like 10m", what, v.Value)
		}
	}
	if v := m["pattern"]; v != nil {
		bc.Pattern = v.Value
		if bc.pattern, err = regexp.Compile(v.Value); err != nil {
			return nil, p.errf(v, "%s: pattern: %v", what, err)
		}
	}
	if v := m["max_parallel"]; v != nil {
		if err := v.Decode(&bc.MaxParallel); err != nil || bc.MaxParallel < 1 || bc.MaxParallel > 4 {
			return nil, p.errf(v, "%s: max_parallel: want 1 to 4", what)
		}
	}
	if v := m["firmware"]; v != nil {
		if v.Kind != yaml.ScalarNode || (v.Value != vmconfig.FirmwareBIOS && v.Value != vmconfig.FirmwareEFI) {
			return nil, p.errf(v, "%s: firmware %q: want bios or efi (for points without a VM configuration)", what, v.Value)
		}
		bc.Firmware = v.Value
	}
	if err := p.bootCheckApps(m, what, bc); err != nil {
		return nil, err
	}
	if !bc.AfterBackup && bc.Schedule == nil {
		return nil, p.errf(n, "%s: say when: after_backup: true or schedule: (an interval like 24h or a cron expression)", what)
	}
	return bc, nil
}

// bootChecks runs the boot checks of a server: per job at most
// MaxParallel at once, outside the backup slots (a check never holds a
// backup back).
type bootChecks struct {
	mu       sync.Mutex
	sems     map[string]chan struct{}
	inflight map[string]bool // "vm/point" being checked
	once     sync.Once
	ok       *prometheus.GaugeVec
	last     *prometheus.GaugeVec
	failed   *prometheus.CounterVec
	runs     *prometheus.CounterVec
}

func (b *bootChecks) register(reg *prometheus.Registry) {
	b.once.Do(func() {
		b.ok = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_boot_check_ok", Help: "1 when the VM's last boot check booted, 0 when it failed or timed out.",
		}, []string{"vm"})
		b.last = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_boot_check_timestamp_seconds", Help: "Unix time of the VM's last boot check.",
		}, []string{"vm"})
		b.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_boot_check_failures_total", Help: "Boot checks that did not boot (failed or timeout).",
		}, []string{"vm"})
		b.runs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_boot_checks_total", Help: "Boot checks run (after a backup or on the boot_check schedule).",
		}, []string{"vm"})
		reg.MustRegister(b.ok, b.last, b.failed, b.runs)
	})
}

func (b *bootChecks) sem(job string, n int) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sems == nil {
		b.sems = map[string]chan struct{}{}
	}
	s, ok := b.sems[job]
	if !ok || cap(s) != n {
		s = make(chan struct{}, n)
		b.sems[job] = s
	}
	return s
}

// startBootCheck boots the new point in the background.
func (s *Server) startBootCheck(ctx context.Context, job Job, vm, pointID string, log *slog.Logger) {
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		s.runBootCheck(ctx, job, vm, pointID, log)
	}()
}

// claim marks vm/point as being checked; false when it already is.
func (b *bootChecks) claim(vm, pointID string) (release func(), ok bool) {
	key := vm + "/" + pointID
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight[key] {
		return nil, false
	}
	if b.inflight == nil {
		b.inflight = map[string]bool{}
	}
	b.inflight[key] = true
	return func() {
		b.mu.Lock()
		delete(b.inflight, key)
		b.mu.Unlock()
	}, true
}

// runBootCheck boots the point once a place among the job's MaxParallel
// checks is free, records the verdict and sets the metrics. A point
// already being checked is not booted twice.
func (s *Server) runBootCheck(ctx context.Context, job Job, vm, pointID string, log *slog.Logger) {
	bc := job.BootCheck
	s.boots.register(s.metrics.reg)
	release, ok := s.boots.claim(vm, pointID)
	if !ok {
		return
	}
	defer release()
	sem := s.boots.sem(job.Name, bc.MaxParallel)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-sem }()
	s.boots.runs.WithLabelValues(vm).Inc()
	res, err := s.bootCheck(ctx, bc, vm, pointID)
	if err != nil && ctx.Err() != nil {
		// stopped, not failed: no verdict kept (the last real one stays
		// in cairn points and the mount), nothing told or counted
		log.Info("boot check stopped with the server; no verdict kept", "point", pointID)
		return
	}
	if err != nil {
		log.Error("boot check could not run", "point", pointID, "error", err)
		s.tell(notify.Event{Kind: notify.BootCheckFailed, Severity: notify.Failure, Job: job.Name, VM: vm, Point: pointID, Error: "the boot check could not run: " + err.Error(),
			Summary: fmt.Sprintf("boot check of %s could not run (job %s)", vm, job.Name)})
		s.boots.failed.WithLabelValues(vm).Inc()
		s.boots.ok.WithLabelValues(vm).Set(0)
		s.boots.last.WithLabelValues(vm).Set(float64(time.Now().Unix()))
		return
	}
	if res.Verdict == boot.VerdictBooted {
		s.boots.ok.WithLabelValues(vm).Set(1)
		log.Info("boot check", "point", pointID, "verdict", res.Verdict, "reason", res.Reason, "seconds", int(res.BootSeconds))
	} else {
		s.boots.ok.WithLabelValues(vm).Set(0)
		s.boots.failed.WithLabelValues(vm).Inc()
		log.Error("boot check: the point did not boot", "point", pointID, "verdict", res.Verdict, "reason", res.Reason)
		s.tell(notify.Event{Kind: notify.BootCheckFailed, Severity: notify.Failure, Job: job.Name, VM: vm, Point: pointID, Error: fmt.Sprintf("%s: %s", res.Verdict, res.Reason),
			Summary: bootFailedSummary(res, vm, pointID, job.Name)})
	}
	s.boots.last.WithLabelValues(vm).Set(float64(res.Finished.Unix()))
}

// bootCheckDue lists the VMs of the job whose newest point has no boot
// verdict yet (or one older than the point), with that point.
func (s *Server) bootCheckDue(ctx context.Context, job Job) (map[string]string, error) {
	vms, err := s.jobVMs(ctx, job)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, v := range vms {
		want[v] = true
	}
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	due := map[string]string{}
	for _, v := range cat {
		p, ok := v.Latest()
		if !want[v.Name] || !ok {
			continue
		}
		made := p.Committed
		if made.IsZero() {
			made = p.Time
		}
		if res, ok := boot.LoadResult(s.repo.Dir(), v.Name, p.ID); ok && !res.Finished.Before(made) {
			continue
		}
		due[v.Name] = p.ID
	}
	return due, nil
}

// scheduledBootChecks is one run of a job's boot_check schedule: the
// newest point of each of its VMs without a verdict is booted, at most
// MaxParallel at once. Checks hold no backup slot, so backups go on.
func (s *Server) scheduledBootChecks(ctx context.Context, job Job) {
	log := s.log.With("job_name", job.Name)
	due, err := s.bootCheckDue(ctx, job)
	if err != nil {
		log.Error("scheduled boot check: list the job's points", "error", err)
		return
	}
	var wg sync.WaitGroup
	for vm, id := range due {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runBootCheck(ctx, job, vm, id, log.With("vm", vm))
		}()
	}
	wg.Wait()
}

// startBootCheckSchedules starts the timers of the jobs' boot_check
// schedules.
func (s *Server) startBootCheckSchedules(ctx context.Context, cfg *Config, wg *sync.WaitGroup) {
	for _, j := range cfg.Jobs {
		if j.BootCheck == nil || j.BootCheck.Schedule == nil {
			continue
		}
		sc := j.BootCheck.Schedule
		// A job that only boot-checks: its next run is the boot check's
		// (as a replicate-only job's is its replication's).
		var onNext func(time.Time)
		if !j.BacksUp() && (j.Replicate == nil || j.Replicate.Schedule == nil) {
			onNext = func(next time.Time) { s.setNextRun(j.Name, "boot-check "+sc.String(), next) }
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runOnSchedule(ctx, "boot-check/"+j.Name, sc, true, onNext, func(ctx context.Context) { s.scheduledBootChecks(ctx, j) })
		}()
	}
}

func (s *Server) bootCheck(ctx context.Context, bc *BootCheck, vm, pointID string) (boot.Result, error) {
	p, err := s.repo.ResolvePoint(ctx, vm, pointID)
	if err != nil {
		return boot.Result{}, err
	}
	work, err := os.MkdirTemp("", "cairn-serve-boot-")
	if err != nil {
		return boot.Result{}, err
	}
	defer os.RemoveAll(work)
	serial := filepath.Join(work, boot.SerialFile)
	opts := boot.Options{Network: boot.NetworkIsolated, Serial: serial, RunDir: filepath.Join(work, "run"), Logger: s.log,
		Forwards: boot.CheckPorts(bc.checks)}
	pm, err := boot.StartPoint(ctx, s.repo, p, opts)
	if errors.Is(err, boot.ErrNoConfig) && bc.Firmware != "" {
		// No configuration (an imported point): the job's firmware. A
		// point that has one keeps its own, so it is only a fallback.
		opts.Firmware = bc.Firmware
		pm, err = boot.StartPoint(ctx, s.repo, p, opts)
	}
	if errors.Is(err, boot.ErrNoConfig) {
		return boot.Result{}, fmt.Errorf("%w; give the job's boot_check: a firmware: bios or efi, or import the VM with cairn import --vm-config FILE so that its points carry the firmware and disks to boot", err)
	}
	if err != nil {
		return boot.Result{}, err
	}
	vo := boot.VerifyOptions{Timeout: bc.Timeout, Pattern: bc.pattern, Screenshot: filepath.Join(work, boot.ScreenshotFile),
		Checks: bc.checks, CheckTimeout: bc.CheckTimeout}
	res := boot.Verify(ctx, pm.Machine, vo)
	pm.Stop()
	if ctx.Err() != nil {
		return res, fmt.Errorf("boot check of %s point %s: server stopping: %w", vm, p.ID, ctx.Err())
	}
	if err := boot.SaveResult(s.repo.Dir(), vm, p.ID, res, vo.Screenshot, serial); err != nil {
		return res, fmt.Errorf("save the boot check: %w", err)
	}
	return res, nil
}

// handleBootResult is GET /api/v1/points/{vm}/{point}/boot: the point's
// last boot check (404 when none ran).
func (s *Server) handleBootResult(w http.ResponseWriter, r *http.Request) {
	p, err := s.repo.ResolvePoint(r.Context(), r.PathValue("vm"), r.PathValue("point"))
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	res, ok := boot.LoadResult(s.repo.Dir(), p.VM, p.ID)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("point %s of %s has no boot check", p.ID, p.VM))
		return
	}
	if res.Screenshot != "" {
		res.Screenshot = fmt.Sprintf("/api/v1/points/%s/%s/boot/screenshot.png", p.VM, p.ID)
	}
	res.SerialLog = ""
	writeJSON(w, http.StatusOK, res)
}

// handleBootScreenshot is GET /api/v1/points/{vm}/{point}/boot/screenshot.png.
func (s *Server) handleBootScreenshot(w http.ResponseWriter, r *http.Request) {
	p, err := s.repo.ResolvePoint(r.Context(), r.PathValue("vm"), r.PathValue("point"))
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	data, err := os.ReadFile(filepath.Join(boot.ResultsDir(s.repo.Dir(), p.VM, p.ID), boot.ScreenshotFile))
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("point %s of %s has no boot screenshot", p.ID, p.VM))
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(data)
}

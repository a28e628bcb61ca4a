package serve

import (
	"context"
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
)

// BootCheck is a job's boot_check: after each successful backup, the new
// point is booted headless and isolated and judged (backupd/boot.Verify).
// A failed check is logged and counted; it never fails the backup.
type BootCheck struct {
	AfterBackup bool
	Timeout     time.Duration // default 10m
	Pattern     string        // serial-console RE meaning booted (default: a login prompt)
	MaxParallel int           // boot checks of this job at once (default 1)
	pattern     *regexp.Regexp
}

// bootCheck parses boot_check: {after_backup: true, timeout: 10m,
// pattern: RE, max_parallel: 1}.
func (p *parser) bootCheck(n *yaml.Node, what string) (*BootCheck, error) {
	what += ": boot_check"
	m, err := p.fields(n, what, "after_backup", "schedule", "timeout", "pattern", "max_parallel")
	if err != nil {
		return nil, err
	}
	bc := &BootCheck{AfterBackup: true, Timeout: 10 * time.Minute, MaxParallel: 1}
	if v := m["schedule"]; v != nil {
		return nil, p.errf(v, "%s: schedule: not supported yet; boot checks run after_backup", what)
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
	return bc, nil
}

// bootChecks runs the boot checks of a server: per job at most
// MaxParallel at once, outside the backup slots (a check never holds a
// backup back).
type bootChecks struct {
	mu     sync.Mutex
	sems   map[string]chan struct{}
	once   sync.Once
	ok     *prometheus.GaugeVec
	last   *prometheus.GaugeVec
	failed *prometheus.CounterVec
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
		reg.MustRegister(b.ok, b.last, b.failed)
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
	bc := job.BootCheck
	s.boots.register(s.metrics.reg)
	sem := s.boots.sem(job.Name, bc.MaxParallel)
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-sem }()
		res, err := s.bootCheck(ctx, bc, vm, pointID)
		if err != nil {
			log.Error("boot check could not run", "point", pointID, "error", err)
			s.boots.failed.WithLabelValues(vm).Inc()
			s.boots.ok.WithLabelValues(vm).Set(0)
			s.boots.last.WithLabelValues(vm).Set(float64(time.Now().Unix()))
			return
		}
		ok := res.Verdict == boot.VerdictBooted
		if ok {
			s.boots.ok.WithLabelValues(vm).Set(1)
			log.Info("boot check", "point", pointID, "verdict", res.Verdict, "reason", res.Reason, "seconds", int(res.BootSeconds))
		} else {
			s.boots.ok.WithLabelValues(vm).Set(0)
			s.boots.failed.WithLabelValues(vm).Inc()
			log.Error("boot check: the point did not boot", "point", pointID, "verdict", res.Verdict, "reason", res.Reason)
		}
		s.boots.last.WithLabelValues(vm).Set(float64(res.Finished.Unix()))
	}()
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
	pm, err := boot.StartPoint(ctx, s.repo, p, boot.Options{Network: boot.NetworkIsolated, Serial: serial,
		RunDir: filepath.Join(work, "run"), Logger: s.log})
	if err != nil {
		return boot.Result{}, err
	}
	vo := boot.VerifyOptions{Timeout: bc.Timeout, Pattern: bc.pattern, Screenshot: filepath.Join(work, boot.ScreenshotFile)}
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

package serve

import (
	"context"
	"io/fs"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus metrics of one server, in its own registry.
type metrics struct {
	reg          *prometheus.Registry
	duration     *prometheus.HistogramVec
	failures     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	running      prometheus.Gauge
	lastSuccess  *prometheus.GaugeVec
	bytesRead    *prometheus.CounterVec
	bytesWritten *prometheus.CounterVec
	lastRead     *prometheus.GaugeVec
	lastWritten  *prometheus.GaugeVec
	points       *prometheus.GaugeVec
	storedBytes  *prometheus.GaugeVec
	repoBytes    prometheus.Gauge
	verifyErrors prometheus.Gauge
	verifyLast   prometheus.Gauge
	srcVerifies  *prometheus.CounterVec
	srcMissed    *prometheus.GaugeVec
	logins       *prometheus.CounterVec
	apiRefused   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_job_duration_seconds", Help: "Duration of successful VM backups.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}, []string{"job", "vm"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_job_failures_total", Help: "VM backups that failed after their retries (or jobs that could not start).",
		}, []string{"job"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_job_retries_total", Help: "VM backups retried after a failure.",
		}, []string{"job"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_backups_running", Help: "VM backups in progress.",
		}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_last_success_timestamp_seconds", Help: "Unix time of the VM's last successful backup.",
		}, []string{"vm"}),
		bytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_backup_read_bytes_total", Help: "Bytes read from the VM's disks by successful backups.",
		}, []string{"vm"}),
		bytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_backup_stored_bytes_total", Help: "Bytes stored in the repository by the VM's successful backups.",
		}, []string{"vm"}),
		lastRead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_last_backup_read_bytes", Help: "Bytes read by the VM's last successful backup.",
		}, []string{"vm"}),
		lastWritten: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_last_backup_stored_bytes", Help: "Bytes stored by the VM's last successful backup.",
		}, []string{"vm"}),
		points: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_points", Help: "Recovery points of the VM in the repository.",
		}, []string{"vm"}),
		storedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_vm_stored_bytes", Help: "Bytes allocated on disk by the VM's delta images.",
		}, []string{"vm"}),
		repoBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_repository_bytes", Help: "Bytes allocated on disk by the repository directory (du).",
		}),
		verifyErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_verify_errors", Help: "Bad blocks found by the last repository verify (0: clean).",
		}),
		verifyLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_verify_last_timestamp_seconds", Help: "Unix time the last repository verify ended.",
		}),
		srcVerifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_source_verifies_total", Help: "Verifies of a VM against its source, by result (ok, differs, failed).",
		}, []string{"vm", "result"}),
		srcMissed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_source_verify_missed_extents", Help: "Areas the last verify against the source found changed where CBT reported none.",
		}, []string{"vm"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_vcenter_logins_total", Help: "Logins to the vCenter (backups, selections, API requests).",
		}, []string{"vcenter"}),
		apiRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_api_refused_total", Help: "API requests refused, by reason (host, origin, token, content_type, rate, queue_full, not_selected).",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.logins, m.apiRefused, m.duration, m.failures, m.retries, m.running, m.lastSuccess, m.bytesRead, m.bytesWritten,
		m.lastRead, m.lastWritten, m.points, m.storedBytes, m.repoBytes, m.verifyErrors, m.verifyLast, m.srcVerifies, m.srcMissed)
	return m
}

func (m *metrics) jobFailed(job string) { m.failures.WithLabelValues(job).Inc() }

func (m *metrics) retried(job string) { m.retries.WithLabelValues(job).Inc() }

func (m *metrics) jobDone(job, vm string, d time.Duration, read, written int64) {
	m.duration.WithLabelValues(job, vm).Observe(d.Seconds())
	m.lastSuccess.WithLabelValues(vm).Set(float64(time.Now().Unix()))
	m.bytesRead.WithLabelValues(vm).Add(float64(read))
	m.bytesWritten.WithLabelValues(vm).Add(float64(written))
	m.lastRead.WithLabelValues(vm).Set(float64(read))
	m.lastWritten.WithLabelValues(vm).Set(float64(written))
}

func (m *metrics) verified(bad int) {
	m.verifyErrors.Set(float64(bad))
	m.verifyLast.Set(float64(time.Now().Unix()))
}

func (m *metrics) sourceVerified(vm string, ran bool, missed int) {
	result := "ok"
	switch {
	case !ran:
		result = "failed"
	case missed > 0:
		result = "differs"
	}
	m.srcVerifies.WithLabelValues(vm, result).Inc()
	if ran {
		m.srcMissed.WithLabelValues(vm).Set(float64(missed))
	}
}

// updateRepoMetrics refreshes the point counts, the bytes each VM's delta
// images allocate and the repository's size.
func (s *Server) updateRepoMetrics(ctx context.Context) {
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		s.log.Warn("metrics: read catalog", "error", err)
		return
	}
	s.metrics.points.Reset()
	s.metrics.storedBytes.Reset()
	imagesDir := filepath.Join(s.repo.Dir(), "images")
	for _, v := range cat {
		s.metrics.points.WithLabelValues(v.Name).Set(float64(len(v.Points)))
		disks := map[uint32]bool{}
		for _, p := range v.Points {
			for _, d := range p.Disks {
				disks[d.ID] = true
			}
		}
		var stored int64
		for id := range disks {
			stored += allocated(filepath.Join(imagesDir, strconv.FormatUint(uint64(id), 10)))
		}
		s.metrics.storedBytes.WithLabelValues(v.Name).Set(float64(stored))
	}
	s.metrics.repoBytes.Set(float64(allocated(s.repo.Dir())))
}

// allocated sums the bytes allocated on disk by the files under dir
// (holes of sparse delta images do not count).
func allocated(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

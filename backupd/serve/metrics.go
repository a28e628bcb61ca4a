package serve

import (
	"context"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus metrics of one server, in its own registry.
type metrics struct {
	reg         *prometheus.Registry
	duration    *prometheus.HistogramVec
	failures    *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	points      *prometheus.GaugeVec
	repoBytes   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_job_duration_seconds", Help: "Duration of successful VM backups.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}, []string{"job", "vm"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_job_failures_total", Help: "Failed backup runs.",
		}, []string{"job"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_last_success_timestamp_seconds", Help: "Unix time of the VM's last successful backup.",
		}, []string{"vm"}),
		points: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_points", Help: "Recovery points of the VM in the repository.",
		}, []string{"vm"}),
		repoBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_repository_bytes", Help: "Bytes used by the repository directory.",
		}),
	}
	m.reg.MustRegister(m.duration, m.failures, m.lastSuccess, m.points, m.repoBytes)
	return m
}

func (m *metrics) jobFailed(job string) { m.failures.WithLabelValues(job).Inc() }

func (m *metrics) jobDone(job, vm string, d time.Duration) {
	m.duration.WithLabelValues(job, vm).Observe(d.Seconds())
	m.lastSuccess.WithLabelValues(vm).Set(float64(time.Now().Unix()))
}

// updateRepoMetrics refreshes the point counts and the repository size.
func (s *Server) updateRepoMetrics(ctx context.Context) {
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		s.log.Warn("metrics: read catalog", "error", err)
		return
	}
	s.metrics.points.Reset()
	for _, v := range cat {
		s.metrics.points.WithLabelValues(v.Name).Set(float64(len(v.Points)))
	}
	var total int64
	_ = filepath.WalkDir(s.repo.Dir(), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		return nil
	})
	s.metrics.repoBytes.Set(float64(total))
}

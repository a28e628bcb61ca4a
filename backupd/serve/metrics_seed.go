package serve

import "context"

// seedLastSuccess sets cairn_last_success_timestamp_seconds of every VM
// of the repository to its newest point's commit time when the server
// starts. Without it the series was absent after a restart until the VM's
// next successful backup, so an alert on its age (an RPO) went silent
// exactly when backups kept failing after a restart.
func (s *Server) seedLastSuccess(ctx context.Context) {
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		s.log.Warn("metrics: read catalog", "error", err)
		return
	}
	for _, v := range cat {
		p, ok := v.Latest()
		if !ok {
			continue
		}
		t := p.Committed
		if t.IsZero() {
			t = p.Time
		}
		s.metrics.lastSuccess.WithLabelValues(v.Name).Set(float64(t.Unix()))
	}
}

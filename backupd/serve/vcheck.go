package serve

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// VCenterStatus is what the server last learnt of logging in to a
// vCenter: at start (checkVCenters) and at every login of a run.
type VCenterStatus struct {
	Name    string    `json:"name"`
	Checked time.Time `json:"checked"`
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"`
}

// vcenterHealth holds the last login result per vCenter.
type vcenterHealth struct {
	mu   sync.Mutex
	last map[string]VCenterStatus
}

func (h *vcenterHealth) set(name string, err error) {
	st := VCenterStatus{Name: name, Checked: time.Now().UTC(), OK: err == nil}
	if err != nil {
		st.Error = err.Error()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil {
		h.last = map[string]VCenterStatus{}
	}
	h.last[name] = st
}

// list returns the results of the vCenters of cfg's jobs, by name.
func (h *vcenterHealth) list(cfg *Config) []VCenterStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []VCenterStatus
	for _, vc := range cfg.VCenters {
		if st, ok := h.last[vc.Name]; ok {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b VCenterStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// checkVCenters logs in to every vCenter a job backs up from, once, when
// the server starts: a wrong password, an untrusted certificate or an
// unreachable vCenter is logged (and shown by cairn status) at once, not
// at the first run of a nightly job.
func (s *Server) checkVCenters(ctx context.Context, cfg *Config) {
	for _, vc := range cfg.VCenters {
		var jobs []string
		var job Job
		for _, j := range cfg.Jobs {
			if j.VCenter == vc.Name {
				jobs, job = append(jobs, j.Name), j
			}
		}
		if len(jobs) == 0 {
			continue
		}
		conn, _, err := s.connect(ctx, &vc, job, s.log.With("vcenter", vc.Name))
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("cannot log in to the vCenter; its jobs fail until this is fixed", "vcenter", vc.Name, "jobs", jobs, "error", err)
			}
			continue
		}
		conn.Close()
		s.log.Info("vCenter login ok", "vcenter", vc.Name, "jobs", jobs)
	}
}

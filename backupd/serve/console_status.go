package serve

import (
	"fmt"
	"net/http"
	"time"
)

// StatusSummary is GET /api/v1/status?vms=summary: Status with each VM
// cut to what the console's dashboard shows, so the answer polled every
// few seconds stays small at 1,000 VMs (the full form carries each VM's
// whole latest point: its disks, metadata and attachments).
type StatusSummary struct {
	Status
	VMs []VMSummary `json:"vms"`
}

// VMSummary is one VM of StatusSummary.
type VMSummary struct {
	Name   string        `json:"name"`
	Points int           `json:"points"`
	Latest *PointSummary `json:"latest,omitempty"`
	// LastRun is the VM's last finished backup run of this server.
	LastRun *RunSummary `json:"last_run,omitempty"`
	// RPO is the VM's RPO state, when a job with an RPO selects it.
	RPO        *RPOState `json:"rpo,omitempty"`
	Unselected bool      `json:"unselected,omitempty"`
	// Suspicious and LastClean as in VMStatus (anomaly.go).
	Suspicious []string `json:"suspicious,omitempty"`
	LastClean  string   `json:"last_clean,omitempty"`
}

// PointSummary is a VM's latest point in StatusSummary.
type PointSummary struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Consistency string    `json:"consistency"`
	Size        int64     `json:"size"` // of its disks, summed
	Stored      int64     `json:"stored_bytes"`
}

// RunSummary is a VM's last run in StatusSummary.
type RunSummary struct {
	ID    string    `json:"id"`
	State string    `json:"state"`
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	Error string    `json:"error,omitempty"`
}

// handleStatusForm answers GET /api/v1/status in the form vms= asks for
// ("" the full form, summary); it reports whether it answered.
func (s *Server) handleStatusForm(w http.ResponseWriter, r *http.Request) bool {
	form := r.URL.Query().Get("vms")
	switch form {
	case "", "full":
		return false
	case "summary":
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("vms=%q: give vms=summary (or leave it out for the full form)", form))
		return true
	}
	st, err := s.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return true
	}
	cat, err := s.repo.Catalog(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return true
	}
	rpo := map[string]*RPOState{}
	for _, rs := range rpoStates(s.Config(), cat, time.Now()) {
		rpo[rs.VM] = &rs
	}
	out := StatusSummary{Status: st, VMs: make([]VMSummary, 0, len(st.VMs))}
	for _, v := range st.VMs {
		vs := VMSummary{Name: v.Name, Points: v.Points, RPO: rpo[v.Name], Unselected: v.Unselected, Suspicious: v.Suspicious, LastClean: v.LastClean}
		if p := v.Latest; p != nil {
			ps := &PointSummary{ID: p.ID, Time: p.Time, Consistency: p.Consistency}
			for _, d := range p.Disks {
				ps.Size += d.Size
				ps.Stored += d.StoredBytes
			}
			vs.Latest = ps
		}
		if lr := v.LastRun; lr != nil {
			vs.LastRun = &RunSummary{ID: lr.ID, State: lr.State, Start: lr.Start, End: lr.End, Error: lr.Error}
		}
		out.VMs = append(out.VMs, vs)
	}
	out.Status.VMs = nil
	writeJSON(w, http.StatusOK, out)
	return true
}

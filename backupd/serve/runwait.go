package serve

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// MaxRunWait bounds how long GET /api/v1/jobs/wait holds a request (the
// CLI's HTTP client gives up after 30 s).
const MaxRunWait = 20 * time.Second

// runWaitPoll is how often a waiting request looks at its runs.
const runWaitPoll = 50 * time.Millisecond

// RunEnded reports whether a run is over (ok, failed, cancelled, or
// skipped by a pre hook).
func RunEnded(state string) bool {
	return state == StateOK || state == StateFailed || state == StateCancelled || state == StateSkipped
}

// handleRunWait is GET /api/v1/jobs/wait?id=RUN[&id=RUN...][&timeout=20s]:
// it answers {"runs": [...]} with the named runs once one of them has
// ended, or when the timeout (at most MaxRunWait) passes. While the
// server stops it answers only once every named run has ended, so that a
// waiting client (cairn trigger --wait) learns each run's end, cancelled
// ones too, in the one request the server finishes before it exits: a
// client polling GET /api/v1/jobs found the server gone instead.
func (s *Server) handleRunWait(w http.ResponseWriter, r *http.Request) {
	ids := r.URL.Query()["id"]
	if len(ids) == 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("name the runs to wait for: ?id=RUN (repeatable), as POST /api/v1/jobs answers"))
		return
	}
	timeout := MaxRunWait
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("timeout %q: want a duration like 20s (at most %s)", v, MaxRunWait))
			return
		}
		timeout = min(d, MaxRunWait)
	}
	deadline := time.Now().Add(timeout)
	for {
		runs, missing, ended := s.runsByID(ids)
		if len(missing) > 0 {
			writeError(w, http.StatusNotFound, fmt.Errorf("no run %s on this server (it keeps its newest %d runs, until it stops)", strings.Join(missing, ", "), maxRuns))
			return
		}
		if ended == len(runs) || (ended > 0 && !s.stopping()) || !time.Now().Before(deadline) {
			writeJSON(w, http.StatusOK, JobsResponse{Runs: runs})
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(runWaitPoll):
		}
	}
}

// runsByID returns copies of the runs named by ids (in that order), the
// ids no run has, and how many of the runs have ended.
func (s *Server) runsByID(ids []string) (runs []RunRecord, missing []string, ended int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		found := false
		for _, r := range s.runs {
			if r.ID == id {
				runs = append(runs, *r)
				if RunEnded(r.State) {
					ended++
				}
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, id)
		}
	}
	return runs, missing, ended
}

// stopping reports whether the server has been told to stop.
func (s *Server) stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx != nil && s.ctx.Err() != nil
}

package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
)

// Handler is the HTTP API: /healthz, /metrics, GET /api/v1/vms,
// /api/v1/points, /api/v1/jobs and POST /api/v1/jobs {"vm": NAME}.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/v1/vms", s.handleVMs)
	mux.HandleFunc("GET /api/v1/points", s.handlePoints)
	mux.HandleFunc("GET /api/v1/jobs", s.handleJobs)
	mux.HandleFunc("POST /api/v1/jobs", s.handleRunNow)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// VMStatus is one VM of /api/v1/vms.
type VMStatus struct {
	Name   string          `json:"name"`
	Points int             `json:"points"`
	Latest *blockmap.Point `json:"latest,omitempty"`
}

func (s *Server) handleVMs(w http.ResponseWriter, r *http.Request) {
	cat, err := s.repo.Catalog(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := []VMStatus{}
	for _, v := range cat {
		st := VMStatus{Name: v.Name, Points: len(v.Points)}
		if p, ok := v.Latest(); ok {
			st.Latest = &p
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePoints(w http.ResponseWriter, r *http.Request) {
	cat, err := s.repo.Catalog(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	vm := r.URL.Query().Get("vm")
	out := []blockmap.Point{}
	for _, v := range cat {
		if vm == "" || v.Name == vm {
			out = append(out, v.Points...)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// JobsResponse is GET /api/v1/jobs: the server's runs and the
// repository's job history (backupd records, every process).
type JobsResponse struct {
	Runs    []RunRecord         `json:"runs"`
	History []backupd.JobRecord `json:"history"`
}

func (s *Server) handleJobs(w http.ResponseWriter, r *http.Request) {
	hist, err := backupd.NewJobLog(s.repo.Dir()).List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	sort.SliceStable(hist, func(i, j int) bool { return hist[i].Start.Before(hist[j].Start) })
	if hist == nil {
		hist = []backupd.JobRecord{}
	}
	writeJSON(w, http.StatusOK, JobsResponse{Runs: s.Runs(), History: hist})
}

func (s *Server) handleRunNow(w http.ResponseWriter, r *http.Request) {
	var req struct {
		VM string `json:"vm"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.VM == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"vm\": NAME}"))
		return
	}
	cfg := s.Config()
	var job *Job
	for i := range cfg.Jobs {
		for _, p := range cfg.Jobs[i].VMs {
			if ok, _ := path.Match(p, req.VM); ok && job == nil {
				job = &cfg.Jobs[i]
			}
		}
	}
	if job == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no job of the configuration selects VM %q", req.VM))
		return
	}
	ctx := s.runCtx()
	if ctx == nil || ctx.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("server is stopping"))
		return
	}
	run := s.newRun(job.Name, req.VM, "api")
	j := *job
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		s.runJob(ctx, cfg, j, []*RunRecord{run}, "api")
	}()
	writeJSON(w, http.StatusAccepted, map[string]string{"id": run.ID, "job": j.Name, "vm": req.VM})
}

package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/blockmap"
)

// Handler is the HTTP API: /healthz, /metrics, GET /api/v1/status,
// /api/v1/vms, /api/v1/points, /api/v1/jobs, POST /api/v1/jobs
// {"vm": NAME[, "job": JOB]}, POST /api/v1/verify, GET
// /api/v1/replications and /api/v1/remotes/NAME/points (replicate.go).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/v1/vms", s.handleVMs)
	mux.HandleFunc("GET /api/v1/points", s.handlePoints)
	mux.HandleFunc("GET /api/v1/points/{vm}/{point}/boot", s.handleBootResult)
	mux.HandleFunc("GET /api/v1/points/{vm}/{point}/boot/screenshot.png", s.handleBootScreenshot)
	mux.HandleFunc("GET /api/v1/jobs", s.handleJobs)
	mux.HandleFunc("POST /api/v1/jobs", s.handleRunNow)
	mux.HandleFunc("GET /api/v1/jobs/wait", s.handleRunWait) // runwait.go
	mux.HandleFunc("GET /api/v1/status", s.handleStatus)
	mux.HandleFunc("GET /api/v1/restores", s.handleRestores) // restore.go
	mux.HandleFunc("POST /api/v1/restores", s.handleRestore)
	mux.HandleFunc("GET /api/v1/instant", s.handleInstantList) // instant.go
	mux.HandleFunc("POST /api/v1/instant", s.handleInstantStart)
	mux.HandleFunc("POST /api/v1/instant/{id}/migrate", s.handleInstantMigrate)
	mux.HandleFunc("POST /api/v1/instant/{id}/stop", s.handleInstantStop)
	mux.HandleFunc("GET /api/v1/whoami", s.handleWhoami)
	mux.HandleFunc("GET /api/v1/replications", s.handleReplications)
	mux.HandleFunc("GET /api/v1/remotes/{name}/points", s.handleRemotePoints)
	mux.HandleFunc("GET /api/v1/remotes/{name}/stats", s.handleRemoteStats) // remote_stats.go
	mux.HandleFunc("POST /api/v1/acks", s.handleAck)                        // anomaly.go: a suspicious point is a false alarm
	mux.HandleFunc("POST /api/v1/verify", func(w http.ResponseWriter, r *http.Request) {
		if err := s.VerifyNow(); err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"verify": "started"})
	})
	s.routeConsole(mux) // console.go: the web console, file browsing and downloads
	// access.go: every route's role, and the audit log
	return consoleHeaders(s.authorize(mux, jsonErrors(mux)))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeBody reads a request's JSON body into v: at most 64 KiB, and an
// unknown field is an error (a misspelt "job" or "note" must not be
// dropped silently).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// VMStatus is one VM of /api/v1/vms.
type VMStatus struct {
	Name   string          `json:"name"`
	Points int             `json:"points"`
	Latest *blockmap.Point `json:"latest,omitempty"`
	// LastRun is the VM's last finished backup run of this server.
	LastRun *RunRecord `json:"last_run,omitempty"`
	// Jobs back the VM up (by name, or in their last selection).
	Jobs []string `json:"jobs,omitempty"`
	// Unselected: no job backs the VM up any more (removed from the
	// vCenter or from every job); its points are kept.
	Unselected bool `json:"unselected,omitempty"`
	// Suspicious are the VM's points flagged for suspicious changes and
	// not acknowledged, oldest first; LastClean the point retention keeps
	// for them (anomaly.go).
	Suspicious []string `json:"suspicious,omitempty"`
	LastClean  string   `json:"last_clean,omitempty"`
}

// VMStatuses summarizes a repository catalog, one entry per VM.
func VMStatuses(cat []blockmap.VMSummary) []VMStatus {
	out := []VMStatus{}
	for _, v := range cat {
		st := VMStatus{Name: v.Name, Points: len(v.Points)}
		if p, ok := v.Latest(); ok {
			st.Latest = &p
		}
		out = append(out, st)
	}
	return out
}

func (s *Server) vmStatuses(ctx context.Context) ([]VMStatus, error) {
	cat, err := s.repo.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	return s.addSuspicious(s.addLastRuns(VMStatuses(cat)), cat), nil
}

func (s *Server) handleVMs(w http.ResponseWriter, r *http.Request) {
	out, err := s.vmStatuses(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
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
	var pts []blockmap.Point
	for _, v := range cat {
		if vm == "" || v.Name == vm {
			pts = append(pts, v.Points...)
		}
	}
	writeJSON(w, http.StatusOK, s.withAcks(pts))
}

// JobsResponse is GET /api/v1/jobs[?limit=N]: the server's runs and the
// newest N (default 500; 0: all) records of the repository's job history
// (backupd records, every process).
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
	limit := 500
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a number >= 0 (0: the whole history)", v))
			return
		}
		limit = n
	}
	if limit > 0 && len(hist) > limit {
		hist = hist[len(hist)-limit:]
	}
	if hist == nil {
		hist = []backupd.JobRecord{}
	}
	writeJSON(w, http.StatusOK, JobsResponse{Runs: s.Runs(), History: hist})
}

// requestError is a refused backup request: its HTTP status and why.
type requestError struct {
	status int
	reason string
}

func (e *requestError) Error() string { return e.reason }

func refused(status int, format string, args ...any) error {
	return &requestError{status: status, reason: fmt.Sprintf(format, args...)}
}

func (s *Server) handleRunNow(w http.ResponseWriter, r *http.Request) {
	var req struct {
		VM  string `json:"vm"`
		Job string `json:"job"`
	}
	if err := decodeBody(w, r, &req); err != nil || req.VM == "" {
		reason := "no \"vm\""
		if err != nil {
			reason = err.Error()
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"vm\": NAME} (optionally \"job\": JOB): %s", reason))
		return
	}
	ctx := s.runCtx()
	if ctx == nil || ctx.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("server is stopping"))
		return
	}
	cfg := s.Config()
	job, err := s.jobFor(r.Context(), cfg, req.VM, req.Job)
	var re *requestError
	switch {
	case errors.As(err, &re):
		if re.status == http.StatusForbidden {
			s.metrics.apiRefused.WithLabelValues("not_selected").Inc()
		}
		writeError(w, re.status, err)
		return
	case err != nil: // the vCenter could not list the selection
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	// One waiting request per VM: a request for a VM whose backup is
	// queued (not yet started) is that backup; and at most
	// MaxQueuedRequests requests wait at once.
	s.mu.Lock()
	queued := 0
	for _, q := range s.runs {
		if q.State != StateQueued {
			continue
		}
		if q.VM == req.VM {
			id, jobName := q.ID, q.Job
			s.mu.Unlock()
			writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "job": jobName, "vm": req.VM, "deduplicated": true})
			return
		}
		if q.Trigger == "api" {
			queued++
		}
	}
	if !s.posts.allow(time.Now()) {
		s.mu.Unlock()
		s.metrics.apiRefused.WithLabelValues("rate").Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, fmt.Errorf("too many backup requests: at most %d a second (bursts of %d); ask again shortly", postRate, postBurst))
		return
	}
	if queued >= MaxQueuedRequests {
		s.mu.Unlock()
		s.metrics.apiRefused.WithLabelValues("queue_full").Inc()
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, fmt.Errorf("%d requested backups are waiting already (the most); ask again when some have started", queued))
		return
	}
	run := s.newRunLocked(job.Name, req.VM, "api")
	s.mu.Unlock()
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		s.runJob(ctx, cfg, job, []*RunRecord{run}, "api")
	}()
	writeJSON(w, http.StatusAccepted, map[string]any{"id": run.ID, "job": job.Name, "vm": req.VM})
}

// jobFor finds the job that backs vm up: the one named, which must
// select it, or else the first whose selection holds it. Selections come
// from the inventory cache, so requests for unknown VMs do not log in to
// the vCenter one by one.
func (s *Server) jobFor(ctx context.Context, cfg *Config, vm, name string) (Job, error) {
	if name != "" {
		for _, j := range cfg.Jobs {
			if j.Name != name {
				continue
			}
			if !j.BacksUp() {
				return Job{}, refused(http.StatusBadRequest, "job %s backs nothing up: it has no vcenter (it replicates or boot-checks VMs already in the repository; cairn import fills it)", name)
			}
			ok, err := s.jobSelects(ctx, cfg, j, vm)
			if err != nil {
				return Job{}, err
			}
			if !ok && slices.Contains(j.VMs, vm) {
				return Job{}, refused(http.StatusNotFound, "job %s names VM %q, but vcenter %s does not have it (not found, or a template): renamed or removed?", name, vm, j.VCenter)
			}
			if !ok {
				return Job{}, refused(http.StatusForbidden, "job %s does not select VM %q (its vms, folders, tags and exclude decide; the vCenter's inventory is read at most every %s)", name, vm, inventoryMinRefresh)
			}
			return j, nil
		}
		return Job{}, refused(http.StatusNotFound, "no job %q in the configuration", name)
	}
	var firstErr error
	for _, j := range cfg.Jobs {
		if !j.BacksUp() {
			continue
		}
		ok, err := s.jobSelects(ctx, cfg, j, vm)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if ok {
			return j, nil
		}
	}
	if firstErr != nil {
		return Job{}, firstErr
	}
	for _, j := range cfg.Jobs {
		if j.BacksUp() && slices.Contains(j.VMs, vm) {
			return Job{}, refused(http.StatusNotFound, "no job of the configuration selects VM %q: job %s names it, but vcenter %s does not have it (not found, or a template): renamed or removed?", vm, j.Name, j.VCenter)
		}
	}
	return Job{}, refused(http.StatusNotFound, "no job of the configuration selects VM %q", vm)
}

// jobSelects reports whether job's selection holds vm: a name its
// exclude patterns match never does; otherwise the job's selection as
// the vCenter last listed it (inventory.go).
func (s *Server) jobSelects(ctx context.Context, cfg *Config, j Job, vm string) (bool, error) {
	for _, p := range j.Exclude {
		if ok, _ := path.Match(p, vm); ok || p == vm {
			return false, nil
		}
	}
	return s.inv.selects(ctx, j.Name, vm, func(ctx context.Context) ([]string, error) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		conn, opts, err := s.connect(cctx, cfg.VCenterByName(j.VCenter), j, s.log)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", j.Name, err)
		}
		defer conn.Close()
		sel := j.Selection()
		sel.Credentials = opts.Credentials
		vms, err := conn.SelectVMs(cctx, sel)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", j.Name, err)
		}
		names := make([]string, len(vms))
		for i, v := range vms {
			names[i] = v.Name
		}
		return names, nil
	})
}

// Status is GET /api/v1/status.
type Status struct {
	Version    string       `json:"version,omitempty"`
	PID        int          `json:"pid"`
	Started    time.Time    `json:"started"`
	Config     string       `json:"config,omitempty"`
	Repository string       `json:"repository"`
	Mount      string       `json:"mount,omitempty"`
	Listen     string       `json:"listen"`
	Jobs       []JobStatus  `json:"jobs"`
	Running    []RunRecord  `json:"running"`
	Verify     VerifyStatus `json:"verify"`
	VMs        []VMStatus   `json:"vms"`
	// Notify is each notify target's delivery status (notify: in the config).
	Notify []notify.TargetStatus `json:"notify,omitempty"`
	// VCenters are the last logins to the jobs' vCenters (at start and
	// by every run): ok, or the error.
	VCenters []VCenterStatus `json:"vcenters,omitempty"`
	// Timezone is the zone of cron schedules (timezone: in the config).
	Timezone string `json:"timezone,omitempty"`
	// ReloadError is the last refused reload of the config (the old one
	// stays in force), until one succeeds.
	ReloadError   string    `json:"reload_error,omitempty"`
	ReloadErrorAt time.Time `json:"reload_error_at,omitzero"`
}

// Status returns the server's state: jobs with their next runs, the
// backups in progress, the last repository verify and every VM's points.
func (s *Server) Status(ctx context.Context) (Status, error) {
	cfg := s.Config()
	vms, err := s.vmStatuses(ctx)
	if err != nil {
		return Status{}, err
	}
	st := Status{
		Version: s.version, PID: os.Getpid(), Config: cfg.File, Repository: cfg.Repository, Mount: cfg.Mount,
		Listen: s.listen, Jobs: []JobStatus{}, Running: []RunRecord{}, VMs: vms,
	}
	s.mu.Lock()
	st.Started = s.started
	for _, j := range cfg.Jobs {
		js := *s.jobStatus(j.Name)
		if j.Schedule != nil {
			js.Schedule = j.Schedule.String()
		}
		st.Jobs = append(st.Jobs, js)
	}
	for _, r := range s.runs {
		if r.State == StateRunning || r.State == StateQueued {
			st.Running = append(st.Running, *r)
		}
	}
	st.Verify = s.verify
	st.Timezone = zoneName(cfg)
	st.VCenters = s.vcs.list(cfg)
	st.ReloadError, st.ReloadErrorAt = s.rejected.err, s.rejected.at
	s.mu.Unlock()
	st.Notify = s.NotifyStatus()
	return st, nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if s.handleStatusForm(w, r) { // ?vms=summary: console_status.go
		return
	}
	st, err := s.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

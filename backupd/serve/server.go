// Package serve is the cairn daemon: it keeps the repository mounted, runs
// the backup jobs of a cairn.yaml on their schedule, applies retention
// after each successful job and answers an HTTP API (see docs/serve.md).
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
)

// Server is a running cairn serve.
type Server struct {
	log  *slog.Logger
	repo *blockmap.Repo

	mu      sync.Mutex
	cfg     *Config
	reload  chan *Config
	runs    []*RunRecord // newest last, at most maxRuns
	ctx     context.Context
	running sync.WaitGroup

	backupMu sync.Mutex // one backup run at a time
	metrics  *metrics
}

const maxRuns = 500

// Run serves cfg until ctx is cancelled: it mounts the repository at
// cfg.Mount, schedules the jobs and answers HTTP on cfg.Listen. When ctx
// ends, running backups are aborted (backupd removes their snapshots), the
// mount is released and Run returns.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// New returns a server for cfg; nothing runs until Run.
func New(cfg *Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	return &Server{log: log, cfg: cfg, reload: make(chan *Config, 1), metrics: newMetrics()}, nil
}

// Reload replaces the jobs with those of cfg (the repository, mount and
// listen address stay until a restart).
func (s *Server) Reload(cfg *Config) {
	select {
	case <-s.reload:
	default:
	}
	s.reload <- cfg
}

// Config is the configuration in force.
func (s *Server) Config() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Run serves until ctx is cancelled (see the package function Run).
func (s *Server) Run(ctx context.Context) error {
	cfg := s.Config()
	repo, err := blockmap.Open(ctx, cfg.Repository, blockmap.Options{Logger: s.log})
	if err != nil {
		return fmt.Errorf("open repository: %w", err)
	}
	defer repo.Close()
	s.repo = repo
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()

	var srv *fusefs.Server
	if cfg.Mount != "" {
		if err := os.MkdirAll(cfg.Mount, 0o755); err != nil {
			return fmt.Errorf("create mount point: %w", err)
		}
		srv, err = fusefs.Mount(ctx, repo, cfg.Mount, fusefs.Options{Logger: s.log, FSProvider: guest.Provider(s.log)})
		if err != nil {
			return fmt.Errorf("mount %s: %w", cfg.Mount, err)
		}
		s.log.Info("mounted", "dir", srv.Dir())
	}
	defer func() {
		if srv == nil {
			return
		}
		if err := srv.Unmount(true, 5*time.Second); err != nil && !errors.Is(err, fusefs.ErrNotMounted) {
			s.log.Error("unmount", "dir", srv.Dir(), "error", err)
			return
		}
		s.log.Info("unmounted", "dir", srv.Dir())
	}()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	httpSrv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http", "error", err)
		}
	}()
	s.log.Info("serving", "listen", ln.Addr().String(), "repo", cfg.Repository, "jobs", len(cfg.Jobs))
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
	}()

	schedCtx, stopSched := context.WithCancel(ctx)
	s.startSchedules(schedCtx, cfg)
	for {
		select {
		case <-ctx.Done():
			stopSched()
			s.log.Info("stopping: aborting running jobs")
			s.running.Wait()
			return nil
		case ncfg := <-s.reload:
			stopSched()
			s.mu.Lock()
			if ncfg.Repository != cfg.Repository || ncfg.Mount != cfg.Mount || ncfg.Listen != cfg.Listen {
				s.log.Warn("reload: repository, mount and listen changes take effect after a restart")
				ncfg.Repository, ncfg.Mount, ncfg.Listen = cfg.Repository, cfg.Mount, cfg.Listen
			}
			s.cfg, cfg = ncfg, ncfg
			s.mu.Unlock()
			s.log.Info("configuration reloaded", "jobs", len(cfg.Jobs))
			schedCtx, stopSched = context.WithCancel(ctx)
			s.startSchedules(schedCtx, cfg)
		}
	}
}

// startSchedules runs each job at once and then every interval until
// ctx ends. A job still running at a tick delays the next run.
func (s *Server) startSchedules(ctx context.Context, cfg *Config) {
	for _, j := range cfg.Jobs {
		s.running.Add(1)
		go func() {
			defer s.running.Done()
			for {
				s.runJob(s.runCtx(), cfg, j, nil, "schedule")
				t := time.NewTimer(j.Interval)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}()
	}
}

// runCtx is the context of backups: the server's, so a reload does not
// abort a running backup but a stop does.
func (s *Server) runCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
)

// Server is a running cairn serve.
type Server struct {
	log     *slog.Logger
	repo    *blockmap.Repo
	version string
	started time.Time
	listen  string // the address HTTP really listens on

	mu      sync.Mutex
	cfg     *Config
	reload  chan *Config
	runs    []*RunRecord // newest last, at most maxRuns
	ctx     context.Context
	running sync.WaitGroup
	slots   *backupd.Slots // caps of the configuration in force
	jobs    map[string]*JobStatus
	verify  VerifyStatus
	// restores are the restores run through the API (restore.go).
	restores restoreList
	// instant are the instant recovery sessions (instant.go).
	instant instants

	metrics *metrics
	inv     *inventory   // the jobs' selections, for API requests
	token   string       // the API's bearer token (apiguard.go)
	tokens  *tokenStore  // named tokens with roles (tokens.go)
	audit   *auditLog    // the repository's audit.log (audit.go)
	fails   *failLimiter // refused credentials per client (hardening.go)
	hosts   []string     // Host names the API answers besides IPs and localhost
	posts   *rateLimiter // POST requests
	boots   bootChecks
	timers  timers // the schedules' last runs, across reloads (timers.go)
	// rejected is the last refused reload (status_runs.go).
	rejected reloadRejection
	vcs      vcenterHealth // last login per vCenter (vcheck.go)
	ready    func()        // Options.Ready

	remotes  RemoteOpener   // opens the remotes of replicate: sections (replicate.go)
	repl     *replications  // replication runs and what is known offsite
	rmetrics *remoteMetrics // the offsite tier's metrics

	note notifyState // notify targets and RPO tracking (notify.go)

	browse browseState // points open for the file endpoints, download key (browse.go)
}

const maxRuns = 500

// Options are the server's settings that do not come from the config.
type Options struct {
	Logger  *slog.Logger
	Version string // shown by /api/v1/status
	// Remotes opens the remotes that jobs replicate to (nil: replicate:
	// sections fail with a clear error).
	Remotes RemoteOpener
	// Ready, when set, is called once the repository is mounted and the
	// API listens (systemd's READY=1 for Type=notify).
	Ready func()
}

// Run serves cfg until ctx is cancelled: it mounts the repository at
// cfg.Mount, schedules the jobs and answers HTTP on cfg.Listen. When ctx
// ends, running backups are aborted (backupd removes their snapshots), the
// mount is released and Run returns.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	s, err := New(cfg, Options{Logger: log})
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// New returns a server for cfg; nothing runs until Run.
func New(cfg *Config, opts Options) (*Server, error) {
	if cfg == nil {
		return nil, errors.New("serve: no configuration")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		log: log, version: opts.Version, cfg: cfg, reload: make(chan *Config, 1), metrics: newMetrics(),
		slots: newSlots(cfg.Parallelism), jobs: map[string]*JobStatus{},
		inv: newInventory(), posts: newRateLimiter(postRate, postBurst), hosts: allowedHosts(cfg),
		remotes: opts.Remotes, repl: newReplications(), ready: opts.Ready,
	}
	s.registerRemoteMetrics(s.metrics.reg)
	s.registerNotifyMetrics(s.metrics.reg)
	return s, nil
}

// Reload replaces the jobs, parallelism and verify schedule with those of
// cfg (the repository, mount and listen address stay until a restart).
// Running backups finish under the old settings.
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
	defer s.closeBrowsers() // before the repository closes
	s.repo = repo
	if _, err := repo.FixModes(); err != nil {
		s.log.Warn("cannot make the repository private to its owner; run cairn serve as the repository's owner or fix the modes (chmod -R go-rwx)", "dir", repo.Dir(), "error", err)
	}
	s.mu.Lock()
	s.ctx = ctx
	s.started = time.Now().UTC()
	s.mu.Unlock()

	if err := cfg.CheckListen(); err != nil {
		return err
	}
	if s.token, err = ensureToken(repo.Dir()); err != nil {
		return fmt.Errorf("API token: %w", err)
	}
	s.tokens, s.audit = newTokenStore(repo.Dir(), s.token, s.log), newAuditLog(repo.Dir(), s.log)
	s.fails = newFailLimiter()
	var tlsCfg *tls.Config
	if cfg.API.TLS() {
		cert, err := tls.LoadX509KeyPair(cfg.API.TLSCert, cfg.API.TLSKey)
		if err != nil {
			return fmt.Errorf("api: load tls_cert %s and tls_key %s: %w", cfg.API.TLSCert, cfg.API.TLSKey, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	raiseFileLimit(s.log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (another cairn serve? set listen: in the config or --listen)", cfg.Listen, err)
	}
	s.listen = ln.Addr().String()
	// The API holds at most MaxConns descriptors: the rest stay for the
	// mount and the backups, whatever clients do.
	ln = newLimitListener(newClientConnListener(ln, MaxConnsPerClient), MaxConns) // connlimit.go
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}

	var srv *fusefs.Server
	if cfg.Mount != "" {
		s.removeDeadMount(cfg.Mount)
		if err := os.MkdirAll(cfg.Mount, 0o755); err != nil {
			ln.Close()
			return fmt.Errorf("create mount point: %w", err)
		}
		// At most guest.DefaultMaxOpen guest filesystems stay open.
		guests := guest.New(s.log, 0)
		srv, err = fusefs.Mount(ctx, repo, cfg.Mount, fusefs.Options{Logger: s.log, FSProvider: guests.FSProvider(), VolumeProvider: guests.VolumeProvider()})
		if err != nil {
			ln.Close()
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

	httpSrv := &http.Server{
		Handler: s.guard(s.Handler()),
		// A client that sends its request slowly, or never reads the
		// answer, gives its connection back within these times.
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http", "error", err)
		}
	}()
	sf := ServeFile{PID: os.Getpid(), Listen: s.listen, Config: cfg.File, Started: s.started}
	if cfg.API.TLS() {
		sf.TLSCert, _ = filepath.Abs(cfg.API.TLSCert)
	}
	if err := writeServeFile(repo.Dir(), sf); err != nil {
		s.log.Warn("cannot record the server in the repository; cairn status and cairn jobs will not find it", "error", err)
	}
	defer removeServeFile(repo.Dir())
	scheme := "http"
	if cfg.API.TLS() {
		scheme = "https"
	}
	s.log.Info("serving", "listen", s.listen, "console", scheme+"://"+s.listen+"/ui/", "repo", cfg.Repository, "jobs", len(cfg.Jobs))
	if s.ready != nil {
		s.ready()
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
	}()
	s.updateRepoMetrics(ctx)
	s.seedLastSuccess(ctx)
	if err := s.timers.loadSchedule(repo.Dir()); err != nil {
		s.log.Warn("cannot read the jobs' last runs; runs missed while serve was stopped are not caught up", "error", err)
	}
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		s.checkVCenters(ctx, cfg)
	}()
	s.running.Add(1)
	go func() { // instant.go: what sessions of a killed serve left
		defer s.running.Done()
		s.cleanupInstant(ctx, cfg)
	}()

	s.loadNotifyState(repo.Dir())
	s.startNotifier(cfg)
	defer s.stopNotifier()
	schedCtx, stopSched := context.WithCancel(ctx)
	var schedWG sync.WaitGroup
	s.startSchedules(schedCtx, cfg, &schedWG)
	for {
		select {
		case <-ctx.Done():
			stopSched()
			s.log.Info("stopping: aborting running jobs")
			schedWG.Wait()
			s.running.Wait()
			return nil
		case ncfg := <-s.reload:
			stopSched()
			schedWG.Wait() // running jobs go on; only the timers stop
			s.mu.Lock()
			if ncfg.Repository != cfg.Repository || ncfg.Mount != cfg.Mount || ncfg.Listen != cfg.Listen {
				s.log.Warn("reload: repository, mount and listen changes take effect after a restart")
				ncfg.Repository, ncfg.Mount, ncfg.Listen = cfg.Repository, cfg.Mount, cfg.Listen
			}
			if !slices.Equal(ncfg.API.Hosts, cfg.API.Hosts) || ncfg.API.TLSCert != cfg.API.TLSCert || ncfg.API.TLSKey != cfg.API.TLSKey {
				s.log.Warn("reload: api: changes (hosts, tls_cert, tls_key) take effect after a restart; the API keeps its old settings")
			}
			ncfg.API = cfg.API
			s.cfg, cfg = ncfg, ncfg
			s.rejected = reloadRejection{}
			s.slots = newSlots(ncfg.Parallelism)
			s.inv.reset()
			s.mu.Unlock()
			s.startNotifier(cfg)
			s.log.Info("configuration reloaded", "jobs", len(cfg.Jobs))
			schedCtx, stopSched = context.WithCancel(ctx)
			s.startSchedules(schedCtx, cfg, &schedWG)
		}
	}
}

// removeDeadMount lazily unmounts a cairn FUSE mount at dir whose server
// died (a cairn serve or mount that was killed), so that a restarted
// appliance mounts again instead of failing on "transport endpoint is not
// connected". Live mounts and other file systems are left alone (Mount
// then reports them).
func (s *Server) removeDeadMount(dir string) {
	if _, err := os.Stat(dir); !errors.Is(err, syscall.ENOTCONN) {
		return
	}
	mi, ok, err := fusefs.FindMount(dir)
	if err != nil || !ok || mi.FSType != "fuse.cairn" {
		return
	}
	if err := fusefs.Unmount(dir, true); err != nil {
		s.log.Warn("cannot remove the dead mount of a killed cairn", "dir", dir, "error", err)
		return
	}
	s.log.Warn("removed the dead mount a killed cairn left behind", "dir", dir)
}

// startSchedules starts one timer goroutine per job (and one for the
// repository verify) that runs it on its schedule until ctx ends. A job
// still running when its time comes runs again right after it ends. The
// runs go on in the background, so a reload (which ends ctx and starts
// the timers of the new configuration) neither waits for them nor, for
// interval schedules, starts them again (runOnSchedule).
func (s *Server) startSchedules(ctx context.Context, cfg *Config, wg *sync.WaitGroup) {
	for _, j := range cfg.Jobs {
		if !j.BacksUp() {
			continue // replicates and boot-checks only (timers below)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runOnSchedule(ctx, "job/"+j.Name, j.Schedule, true,
				func(next time.Time) { s.setNextRun(j.Name, j.Schedule.String(), next) },
				func(rctx context.Context) { s.runJob(rctx, cfg, j, nil, "schedule") })
		}()
	}
	if cfg.Verify != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runOnSchedule(ctx, "verify", cfg.Verify, false, func(next time.Time) {
				s.mu.Lock()
				s.verify.Schedule, s.verify.NextRun = cfg.Verify.String(), next
				s.mu.Unlock()
			}, s.verifyRepository)
		}()
	}
	s.startReplications(ctx, cfg, wg)
	s.startBootCheckSchedules(ctx, cfg, wg)
	s.startNotifySchedules(ctx, cfg, wg)
}

// sleepUntil waits until t (re-checking the wall clock every minute, so a
// suspended machine or a clock change does not stretch the wait) and
// reports false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		d := time.Until(t)
		if d <= 0 {
			return ctx.Err() == nil
		}
		timer := time.NewTimer(min(d, time.Minute))
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}

// runCtx is the context of backups: the server's, so a reload does not
// abort a running backup but a stop does.
func (s *Server) runCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

// raiseFileLimit raises the soft limit of open files to the hard limit
// (Go does so at start as well; this says what the limit is), so that
// the mount's descriptors are never short while the API holds its
// MaxConns.
func raiseFileLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("cannot raise the open-files limit", "error", err)
		}
	}
	if lim.Cur < 4*MaxConns {
		log.Warn("the open-files limit is low; the mount and backups may run short of descriptors (raise LimitNOFILE)", "limit", lim.Cur)
	}
}

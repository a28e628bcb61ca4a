package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// Instant recovery session states (GET /api/v1/instant).
const (
	InstantStarting  = "starting"
	InstantRunning   = "running"
	InstantMigrating = "migrating"
	InstantStopping  = "stopping"
	InstantMigrated  = "migrated"
	InstantStopped   = "stopped"
	InstantFailed    = "failed"
)

// InstantRequest is the body of POST /api/v1/instant: run a point of VM
// on vSphere straight from the repository over NFS (cairn restore
// instant's flags as fields).
type InstantRequest struct {
	VM           string            `json:"vm"`
	Point        string            `json:"point"`
	VCenter      string            `json:"vcenter,omitempty"`
	Name         string            `json:"name,omitempty"`
	Host         string            `json:"host,omitempty"`
	Cluster      string            `json:"cluster,omitempty"`
	ResourcePool string            `json:"resource_pool,omitempty"`
	Folder       string            `json:"folder,omitempty"`
	Networks     map[string]string `json:"networks,omitempty"`
	PowerOn      bool              `json:"power_on,omitempty"`
	KeepIdentity bool              `json:"keep_identity,omitempty"`
	// MigrateTo is the datastore a migrate without a body moves the VM to.
	MigrateTo string `json:"migrate_to,omitempty"`
	// NFSHost is this machine's address as the ESXi host reaches it
	// (default instant: nfs_host); the session's NFS server listens there.
	NFSHost string `json:"nfs_host,omitempty"`
}

// InstantRecord is one instant recovery session of this server.
type InstantRecord struct {
	ID      string         `json:"id"`
	Request InstantRequest `json:"request"`
	State   string         `json:"state"`
	// Point is the point's ID (the request may say latest).
	Point string `json:"point"`
	// VM, MoRef, Host and Datastore name what runs where once started.
	VM        string `json:"vm,omitempty"`
	MoRef     string `json:"moref,omitempty"`
	Host      string `json:"host,omitempty"`
	Datastore string `json:"datastore,omitempty"`
	// NFS is the address the session's NFS server listens on.
	NFS string `json:"nfs,omitempty"`
	// BytesWritten is what the VM's writes take in the overlays.
	BytesWritten int64     `json:"bytes_written"`
	MigratedTo   string    `json:"migrated_to,omitempty"`
	Started      time.Time `json:"started"`
	End          time.Time `json:"end,omitzero"`
	// Error is why the session failed, or why the last migration did
	// (the session then runs on).
	Error string `json:"error,omitempty"`
}

func (r *InstantRecord) active() bool {
	switch r.State {
	case InstantStarting, InstantRunning, InstantMigrating, InstantStopping:
		return true
	}
	return false
}

// instantOp is a migrate (datastore set) or a stop.
type instantOp struct{ datastore string }

type instantEntry struct {
	rec    InstantRecord
	sess   *backupd.InstantSession
	ops    chan instantOp
	cancel context.CancelFunc // of the start
}

// instants are the server's instant recovery sessions, newest last.
type instants struct {
	mu   sync.Mutex
	list []*instantEntry
	// ready is closed once the start-up cleanup of what a killed serve
	// left is done (a session started during it could lose its datastore).
	ready     chan struct{}
	readyOnce sync.Once
}

func (l *instants) readyChan() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready == nil {
		l.ready = make(chan struct{})
	}
	return l.ready
}

func (l *instants) markReady() { l.readyOnce.Do(func() { close(l.readyChan()) }) }

func (l *instants) snapshot() []InstantRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]InstantRecord, 0, len(l.list))
	for _, e := range l.list {
		r := e.rec
		if e.sess != nil && r.active() {
			r.BytesWritten = e.sess.BytesWritten()
		}
		out = append(out, r)
	}
	return out
}

func (l *instants) find(id string) *instantEntry {
	for _, e := range l.list {
		if e.rec.ID == id {
			return e
		}
	}
	return nil
}

func (l *instants) update(e *instantEntry, f func(*InstantRecord)) {
	l.mu.Lock()
	f(&e.rec)
	l.mu.Unlock()
}

// instantConfig is the instant: section, its defaults for a Config made
// in code.
func (c *Config) instantConfig() InstantConfig {
	if c.Instant.SessionDir == "" {
		return defaultInstant()
	}
	return c.Instant
}

// instantMarker is <session_dir>/<id>/serve.json: which vCenter a
// session of this server ran on, for the clean-up after a killed serve.
type instantMarker struct {
	VCenter string    `json:"vcenter"`
	VM      string    `json:"vm"`
	Point   string    `json:"point"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

const instantMarkerFile = "serve.json"

func (s *Server) handleInstantList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.instant.snapshot())
}

func (s *Server) handleInstantStart(w http.ResponseWriter, r *http.Request) {
	var req InstantRequest
	if err := decodeBody(w, r, &req); err != nil || req.VM == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"vm\": NAME, \"point\": ID|latest, \"nfs_host\": ADDR, ...} (see docs/restore.md, Instant recovery): %v", err))
		return
	}
	if req.Point == "" {
		req.Point = "latest"
	}
	cfg := s.Config()
	ic := cfg.instantConfig()
	if req.NFSHost == "" {
		req.NFSHost = ic.NFSHost
	}
	if err := req.check(); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if ic.MaxSessions == 0 {
		writeError(w, http.StatusConflict, errors.New("instant recovery is off on this server (instant: max_sessions: 0): raise max_sessions in the config"))
		return
	}
	vc, ctx, p, ok := s.restoreTarget(w, r, cfg, req.VCenter, req.VM, req.Point) // restore.go
	if !ok {
		return
	}
	select {
	case <-s.instant.readyChan():
	case <-r.Context().Done():
		return
	}
	id := make([]byte, 4)
	rand.Read(id)
	e := &instantEntry{rec: InstantRecord{ID: "instant-" + hex.EncodeToString(id), Request: req, State: InstantStarting, Point: p.ID, Started: time.Now().UTC()},
		ops: make(chan instantOp, 1)}
	s.instant.mu.Lock()
	active := 0
	for _, o := range s.instant.list {
		if !o.rec.active() {
			continue
		}
		active++
		if o.rec.Request.NFSHost == req.NFSHost {
			s.instant.mu.Unlock()
			writeError(w, http.StatusConflict, fmt.Errorf("instant recovery session %s (VM %s) serves NFS on %s already: give another \"nfs_host\" (an address of this machine), or migrate or stop that session", o.rec.ID, o.rec.Request.VM, req.NFSHost))
			return
		}
	}
	if active >= ic.MaxSessions {
		s.instant.mu.Unlock()
		writeError(w, http.StatusTooManyRequests, fmt.Errorf("%d instant recovery sessions run (instant: max_sessions: %d): migrate or stop one (POST /api/v1/instant/ID/migrate or /stop), or raise max_sessions", active, ic.MaxSessions))
		return
	}
	s.instant.list = append(s.instant.list, e)
	if len(s.instant.list) > maxRuns {
		s.instant.list = s.instant.list[len(s.instant.list)-maxRuns:]
	}
	s.instant.mu.Unlock()
	lns, err := instantListen(req.NFSHost, ic)
	if err != nil {
		s.instant.update(e, func(r *InstantRecord) { r.State, r.Error, r.End = InstantFailed, err.Error(), time.Now().UTC() })
		code := http.StatusBadRequest
		if errors.Is(err, syscall.EADDRINUSE) {
			code = http.StatusConflict
		}
		writeError(w, code, err)
		return
	}
	s.instant.update(e, func(r *InstantRecord) { r.NFS = lns.NFS.Addr().String() })
	sctx, cancel := context.WithCancel(ctx)
	s.instant.mu.Lock()
	e.cancel = cancel
	s.instant.mu.Unlock()
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		defer cancel()
		s.runInstant(sctx, vc, e, p, lns, ic)
	}()
	writeJSON(w, http.StatusAccepted, map[string]string{"id": e.rec.ID, "vm": req.VM, "point": p.ID})
}

// check refuses what `cairn restore instant` refuses before it starts.
func (req InstantRequest) check() error {
	switch {
	case req.NFSHost == "":
		return errors.New(`give "nfs_host": this machine's address as the ESXi host reaches it (or set instant: nfs_host in the config)`)
	case net.ParseIP(req.NFSHost) == nil:
		return fmt.Errorf(`"nfs_host" %q: want an IP address of this machine (the NFS server listens there)`, req.NFSHost)
	case req.Host != "" && req.Cluster != "":
		return errors.New(`"host" and "cluster" exclude each other: the VM goes to a host, or to a cluster (which picks the host)`)
	case req.ResourcePool != "" && req.Cluster != "":
		return errors.New(`"resource_pool" and "cluster" exclude each other: a resource pool belongs to one cluster (or host) already`)
	}
	for old, nw := range req.Networks {
		if old == "" || nw == "" {
			return fmt.Errorf("networks {%q: %q}: want {\"RECORDED NETWORK\": \"NEW NETWORK\"}, both names non-empty", old, nw)
		}
	}
	return nil
}

type instantListeners struct {
	NFS, Mount, Portmap net.Listener
	PortmapUDP          net.PacketConn
}

func (l instantListeners) close() {
	for _, ln := range []net.Listener{l.NFS, l.Mount, l.Portmap} {
		if ln != nil {
			ln.Close()
		}
	}
	if l.PortmapUDP != nil {
		l.PortmapUDP.Close()
	}
}

// instantListen opens a session's NFS, MOUNT and portmapper (TCP and
// UDP) listeners on host.
func instantListen(host string, ic InstantConfig) (l instantListeners, err error) {
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	listen := func(what string, port int) (net.Listener, error) {
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("%s on %s: %w: another NFS server or rpcbind of this machine listens there; stop it, or give another \"nfs_host\"", what, addr, err)
			}
			return nil, fmt.Errorf("%s on %s: %w: \"nfs_host\" must be an address of this machine", what, addr, err)
		}
		return ln, nil
	}
	if l.NFS, err = listen("NFS server", ic.NFSPort); err != nil {
		return
	}
	if l.Mount, err = listen("MOUNT server", 0); err != nil {
		return
	}
	if l.Portmap, err = listen("portmapper", ic.PortmapPort); err != nil {
		return
	}
	if l.PortmapUDP, err = net.ListenPacket("udp", l.Portmap.Addr().String()); err != nil {
		err = fmt.Errorf("portmapper on %s (UDP): %w", l.Portmap.Addr(), err)
	}
	return
}

// runInstant starts the session and runs it until a migrate or stop
// request, the export's failure, or the server's end (which stops it:
// sessions survive no restart).
func (s *Server) runInstant(ctx context.Context, vc *VCenter, e *instantEntry, p blockmap.Point, lns instantListeners, ic InstantConfig) {
	log := s.log.With("instant", e.rec.ID, "vm", p.VM, "point", p.ID)
	fail := func(err error) {
		s.instant.update(e, func(r *InstantRecord) { r.State, r.Error, r.End = InstantFailed, err.Error(), time.Now().UTC() })
	}
	dir := filepath.Join(ic.SessionDir, e.rec.ID)
	conn, _, err := s.connect(ctx, vc, Job{Name: "instant", VCenter: vc.Name}, log)
	if err != nil {
		lns.close()
		fail(err)
		return
	}
	defer conn.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		lns.close()
		fail(fmt.Errorf("instant: session_dir: %w", err))
		return
	}
	mk, _ := json.Marshal(instantMarker{VCenter: vc.Name, VM: p.VM, Point: p.ID, PID: os.Getpid(), Started: e.rec.Started})
	if err := os.WriteFile(filepath.Join(dir, instantMarkerFile), mk, 0o600); err != nil {
		lns.close()
		fail(fmt.Errorf("instant: session_dir: %w", err))
		return
	}
	req := e.rec.Request
	sess, err := backupd.StartInstant(ctx, s.repo, conn, backupd.InstantRequest{
		Point: p, PowerOn: req.PowerOn, SessionDir: filepath.Join(dir, "export"),
		NFS: lns.NFS, Mount: lns.Mount, Portmap: lns.Portmap, PortmapUDP: lns.PortmapUDP, RemoteHost: req.NFSHost,
		Create: vsphere.CreateSpec{Name: req.Name, Host: req.Host, Cluster: req.Cluster, ResourcePool: req.ResourcePool,
			Folder: req.Folder, Networks: req.Networks, KeepIdentity: req.KeepIdentity},
	}, log)
	if err != nil {
		lns.close()
		switch {
		case errors.Is(err, backupd.ErrNoVMConfig):
			err = fmt.Errorf("%w: this point was imported without one; start it with cairn restore instant --vm-config FILE", err)
		case errors.Is(err, vsphere.ErrNFSMount):
			err = fmt.Errorf("%w: the ESXi host must reach %s on TCP 2049 and 111 (and UDP 111): check \"nfs_host\" and the firewall (docs/restore.md, Instant recovery)", err, req.NFSHost)
		case ctx.Err() != nil: // a stop while starting, or serve stopping
			s.instant.update(e, func(r *InstantRecord) {
				r.State, r.Error, r.End = InstantStopped, "stopped while starting: "+err.Error(), time.Now().UTC()
			})
			if !strings.Contains(err.Error(), "cairn restore cleanup") {
				os.RemoveAll(dir)
			}
			return
		default:
			err = withAPIRestoreAdvice(err)
		}
		fail(err)
		// what StartInstant could not undo stays marked for the clean-up
		if !strings.Contains(err.Error(), "cairn restore cleanup") {
			os.RemoveAll(dir)
		}
		return
	}
	s.instant.update(e, func(r *InstantRecord) {
		r.State, r.VM, r.MoRef, r.Host, r.Datastore = InstantRunning, sess.VM, sess.MoRef, sess.Host, sess.Datastore
	})
	s.instant.mu.Lock()
	e.sess = sess
	s.instant.mu.Unlock()
	end := func(state string, err error) {
		n := sess.BytesWritten()
		s.instant.update(e, func(r *InstantRecord) {
			r.State, r.End, r.BytesWritten = state, time.Now().UTC(), n
			if err != nil {
				r.State, r.Error = InstantFailed, err.Error()
			}
		})
		if err == nil {
			os.RemoveAll(dir)
		}
	}
	for {
		select {
		case op := <-e.ops:
			if op.datastore == "" {
				err := sess.Stop(ctx)
				end(InstantStopped, err)
				return
			}
			err := sess.Migrate(ctx, op.datastore)
			if err != nil && !sess.Ended() { // the VM still runs from the backup
				log.Error("instant recovery: migration failed; the VM still runs from the backup", "err", err)
				s.instant.update(e, func(r *InstantRecord) { r.State, r.Error = InstantRunning, err.Error() })
				continue
			}
			s.instant.update(e, func(r *InstantRecord) { r.MigratedTo = op.datastore })
			end(InstantMigrated, err)
			return
		case ferr := <-sess.Failed():
			err := sess.Stop(context.WithoutCancel(ctx))
			end(InstantFailed, errors.Join(fmt.Errorf("the NFS export failed: %w; the VM %s lost its disks and was removed", ferr, sess.VM), err))
			return
		case <-ctx.Done():
			log.Warn("cairn serve stops: stopping the instant recovery session (the VM and its writes are removed)", "vm", sess.VM)
			err := sess.Stop(context.WithoutCancel(ctx))
			end(InstantStopped, err)
			if err == nil {
				s.instant.update(e, func(r *InstantRecord) {
					r.Error = "stopped by the end of cairn serve (sessions do not survive a restart)"
				})
			}
			return
		}
	}
}

func (s *Server) handleInstantMigrate(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Datastore string `json:"datastore"`
	}
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &body); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("want no body or {\"datastore\": NAME}: %v", err))
			return
		}
	}
	s.instantOp(w, r, body.Datastore, true)
}

func (s *Server) handleInstantStop(w http.ResponseWriter, r *http.Request) {
	s.instantOp(w, r, "", false)
}

func (s *Server) instantOp(w http.ResponseWriter, r *http.Request, datastore string, migrate bool) {
	id := r.PathValue("id")
	s.instant.mu.Lock()
	defer s.instant.mu.Unlock()
	e := s.instant.find(id)
	if e == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no instant recovery session %q (GET /api/v1/instant lists them)", id))
		return
	}
	if migrate && datastore == "" {
		datastore = e.rec.Request.MigrateTo
		if datastore == "" {
			writeError(w, http.StatusBadRequest, fmt.Errorf("session %s: give {\"datastore\": NAME}, the datastore the VM moves to (the request gave no \"migrate_to\")", id))
			return
		}
	}
	switch {
	case !migrate && e.rec.State == InstantStarting && e.cancel != nil:
		e.cancel() // StartInstant undoes what it made
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "state": InstantStopping})
		return
	case e.rec.State != InstantRunning:
		writeError(w, http.StatusConflict, fmt.Errorf("session %s is %s: only a running session can be migrated or stopped", id, e.rec.State))
		return
	}
	e.rec.State = InstantStopping
	if migrate {
		e.rec.State, e.rec.Error = InstantMigrating, ""
	}
	e.ops <- instantOp{datastore: datastore}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "state": e.rec.State})
}

// cleanupInstant removes what sessions of a killed cairn serve left: for
// every session directory with a marker, the vCenter's VMs of dead
// restore processes and unused cairn-* NFS datastores (as cairn restore
// cleanup), then the directory. It runs before the first session starts.
func (s *Server) cleanupInstant(ctx context.Context, cfg *Config) {
	defer s.instant.markReady()
	ic := cfg.instantConfig()
	ents, err := os.ReadDir(ic.SessionDir)
	if err != nil {
		return // no sessions ever ran
	}
	byVC := map[string][]string{}
	for _, de := range ents {
		dir := filepath.Join(ic.SessionDir, de.Name())
		b, err := os.ReadFile(filepath.Join(dir, instantMarkerFile))
		if !de.IsDir() || !strings.HasPrefix(de.Name(), "instant-") || err != nil {
			continue
		}
		var m instantMarker
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		byVC[m.VCenter] = append(byVC[m.VCenter], dir)
	}
	for name, dirs := range byVC {
		log := s.log.With("vcenter", name)
		vc := cfg.VCenterByName(name)
		if vc == nil {
			log.Warn("instant recovery sessions of a stopped cairn serve ran on a vCenter no longer configured; run cairn restore cleanup against it", "sessions", dirs)
			continue
		}
		if err := cleanupInstantVCenter(ctx, s, vc, log); err != nil {
			log.Error("cleaning up after instant recovery sessions of a killed cairn serve failed; run cairn restore cleanup", "err", err)
			continue
		}
		for _, d := range dirs {
			if err := os.RemoveAll(d); err != nil {
				log.Warn("cannot remove the session directory of a killed instant recovery session", "dir", d, "err", err)
			}
			log.Warn("removed the instant recovery session a killed cairn serve left", "dir", d)
		}
	}
}

func cleanupInstantVCenter(ctx context.Context, s *Server, vc *VCenter, log *slog.Logger) error {
	conn, _, err := s.connect(ctx, vc, Job{Name: "instant-cleanup", VCenter: vc.Name}, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := backupd.CleanupRestores(ctx, backupd.NewVSphere(conn), "", log); err != nil {
		return err
	}
	_, err = backupd.CleanupInstantDatastores(ctx, conn, log)
	return err
}

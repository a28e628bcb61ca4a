package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// RestoreRequest is the body of POST /api/v1/restores: a point of VM
// (its name in the repository) restored through the configured vCenter
// (by name; default the first). The NBD server command cannot be given
// through the API (it would run any program): restores through the API
// use the nfc transport, hotadd, or the default nbd command (nbdkit vddk).
type RestoreRequest struct {
	VM               string            `json:"vm"`
	Point            string            `json:"point"`
	VCenter          string            `json:"vcenter,omitempty"`
	Name             string            `json:"name,omitempty"`
	Host             string            `json:"host,omitempty"`
	Cluster          string            `json:"cluster,omitempty"`
	ResourcePool     string            `json:"resource_pool,omitempty"`
	Datastore        string            `json:"datastore,omitempty"`
	Folder           string            `json:"folder,omitempty"`
	Networks         map[string]string `json:"networks,omitempty"`
	DiskProvisioning string            `json:"disk_provisioning,omitempty"`
	PowerOn          bool              `json:"power_on,omitempty"`
	KeepIdentity     bool              `json:"keep_identity,omitempty"`
	Replace          bool              `json:"replace,omitempty"`
	InPlace          bool              `json:"in_place,omitempty"`
	Full             bool              `json:"full,omitempty"`
	Transports       []string          `json:"transports,omitempty"`
	ProxyVM          string            `json:"proxy_vm,omitempty"`
}

// RestoreRecord is one restore the server ran or runs (GET /api/v1/restores).
type RestoreRecord struct {
	ID      string                 `json:"id"`
	Request RestoreRequest         `json:"request"`
	State   string                 `json:"state"`
	Start   time.Time              `json:"start"`
	End     time.Time              `json:"end,omitzero"`
	Error   string                 `json:"error,omitempty"`
	Result  *backupd.RestoreResult `json:"result,omitempty"`
}

// restoreList holds the server's restores, newest last.
type restoreList struct {
	mu   sync.Mutex
	list []*RestoreRecord
	seq  int
}

func (l *restoreList) snapshot() []RestoreRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]RestoreRecord, 0, len(l.list))
	for _, r := range l.list {
		out = append(out, *r)
	}
	return out
}

func (l *restoreList) update(r *RestoreRecord, f func(*RestoreRecord)) {
	l.mu.Lock()
	f(r)
	l.mu.Unlock()
}

func (s *Server) handleRestores(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.restores.snapshot())
}

func (s *Server) handleRestore(w http.ResponseWriter, r *http.Request) {
	var req RestoreRequest
	if err := decodeBody(w, r, &req); err != nil || req.VM == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"vm\": NAME, \"point\": ID|latest, ...} (see docs/restore.md): %v", err))
		return
	}
	if req.Point == "" {
		req.Point = "latest"
	}
	if err := req.check(); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	vc, ctx, p, ok := s.restoreTarget(w, r, s.Config(), req.VCenter, req.VM, req.Point)
	if !ok {
		return
	}
	s.restores.mu.Lock()
	s.restores.seq++
	rec := &RestoreRecord{ID: fmt.Sprintf("restore-%d", s.restores.seq), Request: req, State: StateRunning, Start: time.Now().UTC()}
	s.restores.list = append(s.restores.list, rec)
	if len(s.restores.list) > maxRuns {
		s.restores.list = s.restores.list[len(s.restores.list)-maxRuns:]
	}
	s.restores.mu.Unlock()
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		res, err := s.runRestore(ctx, vc, req, p)
		err = withAPIRestoreAdvice(err)
		s.restores.update(rec, func(r *RestoreRecord) {
			r.End, r.State, r.Result = time.Now().UTC(), StateOK, res
			if err != nil {
				r.State, r.Error = StateFailed, err.Error()
			}
		})
	}()
	writeJSON(w, http.StatusAccepted, map[string]string{"id": rec.ID, "vm": req.VM, "point": p.ID})
}

// check refuses what `cairn restore vm` refuses before it starts: a
// request that cannot mean one thing. in_place with replace in particular
// would power off the running original and roll it back, which an
// in-place restore never does on its own.
func (req RestoreRequest) check() error {
	for _, t := range req.Transports {
		if t != backupd.WriteTransportNFC && t != backupd.WriteTransportNBD && t != backupd.WriteTransportHotAdd {
			return fmt.Errorf("transport %q: use nfc, nbd or hotadd", t)
		}
	}
	switch {
	case req.InPlace && req.Replace:
		return errors.New(`"in_place" and "replace" exclude each other: in_place rolls the (powered-off) VM back, replace overwrites a VM of the target name`)
	case req.Host != "" && req.Cluster != "":
		return errors.New(`"host" and "cluster" exclude each other: the VM goes to a host, or to a cluster (which picks the host)`)
	case req.ResourcePool != "" && req.Cluster != "":
		return errors.New(`"resource_pool" and "cluster" exclude each other: a resource pool belongs to one cluster (or host) already`)
	case req.Full && !req.InPlace:
		return errors.New(`"full" goes with "in_place" (a new VM is always written whole)`)
	}
	switch req.DiskProvisioning {
	case "", vmconfig.ProvisioningThin, vmconfig.ProvisioningThick, vmconfig.ProvisioningEager:
	default:
		return fmt.Errorf("disk_provisioning %q: use thin, thick or eager", req.DiskProvisioning)
	}
	for old, nw := range req.Networks {
		if old == "" || nw == "" {
			return fmt.Errorf("networks {%q: %q}: want {\"RECORDED NETWORK\": \"NEW NETWORK\"}, both names non-empty", old, nw)
		}
	}
	return nil
}

func (s *Server) runRestore(ctx context.Context, vc *VCenter, req RestoreRequest, p blockmap.Point) (*backupd.RestoreResult, error) {
	log := s.log.With("restore", req.VM, "point", p.ID)
	conn, _, err := s.connect(ctx, vc, Job{Name: "restore", VCenter: vc.Name}, log)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	creds, err := vsphere.LoadCredentials(vc.Credentials)
	if err != nil {
		return nil, err
	}
	name := req.Name
	if req.InPlace && name == "" {
		name = p.VM
	}
	transports := req.Transports
	if len(transports) == 0 {
		transports = []string{backupd.WriteTransportNFC, backupd.WriteTransportNBD}
	}
	rreq := backupd.RestoreRequest{
		Point: p, PowerOn: req.PowerOn, Replace: req.Replace, InPlace: req.InPlace, Full: req.Full, VCenter: vc.Name,
		Create: vsphere.CreateSpec{
			Name: name, Host: req.Host, Cluster: req.Cluster, ResourcePool: req.ResourcePool, Datastore: req.Datastore, Folder: req.Folder,
			Networks: req.Networks, Provisioning: req.DiskProvisioning, KeepIdentity: req.KeepIdentity,
		},
	}
	lock, err := backupd.LockRestoreTarget(ctx, s.repo, rreq)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	return backupd.Restore(ctx, s.repo, backupd.NewVSphere(conn), rreq, backupd.RestoreOptions{
		Transports: transports, ProxyVM: req.ProxyVM, Credentials: creds, Thumbprint: vc.Thumbprint, Logger: log,
	})
}

// withAPIRestoreAdvice adds to a failed restore's error what an API caller
// can change, in the request's field names (the library names none, the
// CLI adds its flags).
func withAPIRestoreAdvice(err error) error {
	if err == nil {
		return nil
	}
	var pe *vsphere.PlacementError
	var ne *vsphere.NetworkError
	switch {
	case errors.Is(err, vsphere.ErrVMExists):
		return fmt.Errorf(`%w: give "name" to restore beside it, or "replace": true to overwrite it`, err)
	case errors.Is(err, backupd.ErrCBTCannotAnswer):
		return fmt.Errorf(`%w: give "full": true to overwrite every disk whole`, err)
	case errors.As(err, &pe):
		return fmt.Errorf(`%w: give an existing %q, or leave it out`, err, pe.Field)
	case errors.As(err, &ne):
		return fmt.Errorf(`%w: map it in "networks": {%q: "NEW"}`, err, ne.Recorded)
	case errors.Is(err, backupd.ErrNoProxyVM):
		return fmt.Errorf(`%w: give "proxy_vm" (the appliance's own VM), or leave hotadd out of "transports"`, err)
	}
	return err
}

// restoreTarget finds what a restore or an instant recovery asks for: the
// vCenter named (the first one for ""), serve's run context and the
// point. When one is missing it has answered (404, or 503 while serve
// starts or stops) and ok is false.
func (s *Server) restoreTarget(w http.ResponseWriter, r *http.Request, cfg *Config, vcenter, vm, point string) (vc *VCenter, ctx context.Context, p blockmap.Point, ok bool) {
	for i := range cfg.VCenters {
		if vcenter == "" || cfg.VCenters[i].Name == vcenter {
			vc = &cfg.VCenters[i]
			break
		}
	}
	if vc == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no vcenter %q in the configuration", vcenter))
		return nil, nil, p, false
	}
	ctx = s.runCtx()
	if ctx == nil || ctx.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("server is starting or stopping"))
		return nil, nil, p, false
	}
	// s.repo is set before the run context (under s.mu), so it is ready here
	p, err := s.repo.ResolvePoint(r.Context(), vm, point)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return nil, nil, p, false
	}
	return vc, ctx, p, true
}

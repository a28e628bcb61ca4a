package backupd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/nbdserve"
	"github.com/cairnbackup/cairn/backupd/nfsserve"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// InstantHypervisor is what instant recovery asks of vSphere;
// *vsphere.Conn implements it.
type InstantHypervisor interface {
	InstantHost(ctx context.Context, spec vsphere.CreateSpec) (string, error)
	MountNFS(ctx context.Context, host, name, remoteHost, remotePath string) (*vsphere.NFSDatastore, error)
	UnmountNFS(ctx context.Context, ds *vsphere.NFSDatastore) error
	FindNFSDatastores(ctx context.Context, prefix string) ([]vsphere.NFSDatastore, error)
	CreateVMOnDisks(ctx context.Context, spec vsphere.CreateSpec, files map[string]string) (*vsphere.CreatedVM, error)
	FinishRestore(ctx context.Context, ref types.ManagedObjectReference, annotation string) error
	PowerOn(ctx context.Context, ref types.ManagedObjectReference) error
	DestroyVM(ctx context.Context, ref types.ManagedObjectReference) error
	RelocateVM(ctx context.Context, ref types.ManagedObjectReference, datastore string) error
}

// InstantDatastorePrefix starts the name of every NFS datastore instant
// recovery mounts (cairn-<vm>-<point>); `cairn restore cleanup` removes
// such datastores that no VM uses.
const InstantDatastorePrefix = "cairn-"

// ErrDiskNotInPoint means the VM configuration names a disk the point
// holds no data of (independent, RDM or excluded at backup time): an
// instant recovery cannot serve it.
var ErrDiskNotInPoint = errors.New("a disk of the VM is not in the point")

// InstantRequest says what to run where.
type InstantRequest struct {
	Point blockmap.Point
	// Config overrides the point's recorded configuration (required for
	// points without one).
	Config *vmconfig.Config
	// Create places the VM (Name, Host, Cluster, ResourcePool, Folder,
	// Networks, KeepIdentity); its Datastore is the NFS datastore.
	Create vsphere.CreateSpec
	// PowerOn powers the VM on once it is registered.
	PowerOn bool
	// SessionDir keeps the overlays and the hypervisor's files
	// (nfsserve.Options.SessionDir); Stop deletes it.
	SessionDir string
	// NFS and Mount are the listeners of the export's NFS and MOUNT
	// servers; Portmap and PortmapUDP (either may be nil) the portmapper
	// the ESXi host asks (port 111).
	NFS, Mount, Portmap net.Listener
	PortmapUDP          net.PacketConn
	// RemoteHost is the appliance's address as the ESXi host reaches it.
	RemoteHost string
	// Allow lists who may connect to the export (nfsserve.ParseAllow);
	// empty: the ESXi host that mounts it (its name's addresses) and
	// this machine (instantAllow).
	Allow []netip.Prefix
}

// InstantSession is a VM running from a recovery point over NFS.
type InstantSession struct {
	// VM, MoRef and Datastore name what runs where.
	VM        string
	MoRef     string
	Datastore string
	Host      string
	// Started is when StartInstant began.
	Started time.Time

	repoDir string
	hv      InstantHypervisor
	exp     *nfsserve.Export
	ds      *vsphere.NFSDatastore
	ref     types.ManagedObjectReference
	dir     string
	point   blockmap.Point
	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan error
	mu      sync.Mutex
	ended   bool
	// bytesWritten is OverlayBytes when Migrate or Stop ended the export.
	bytesWritten int64
}

// instantDatastoreName is cairn-<vm>-<point>, at most 42 characters (the
// vSphere limit for datastore names), with characters other than letters,
// digits, '-' and '_' made '-'.
func instantDatastoreName(p blockmap.Point) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '-'
		}, s)
	}
	id := clean(p.ID)
	vm := clean(p.VM)
	if max := 42 - len(InstantDatastorePrefix) - 1 - len(id); len(vm) > max {
		vm = vm[:max]
	}
	return InstantDatastorePrefix + vm + "-" + id
}

// StartInstant serves the point's disks over NFS, mounts the export on
// the ESXi host as datastore cairn-<vm>-<point>, creates a VM of the
// point's configuration on those disks and (PowerOn) powers it on. On an
// error everything it made is removed again (VM, datastore, export; the
// session directory stays for a retry). The VM carries the restore marker
// while the session runs: `cairn restore cleanup` removes it (and the
// datastore) when the process that runs the session is gone.
func StartInstant(ctx context.Context, repo *blockmap.Repo, hv InstantHypervisor, req InstantRequest, log *slog.Logger) (_ *InstantSession, err error) {
	if log == nil {
		log = slog.Default()
	}
	p := req.Point
	started := time.Now().UTC()
	var made *InstantSession
	endJob := StartJob(repo.Dir(), JobRecord{Kind: JobInstant, Action: "start", VM: p.VM, Point: p.ID, Target: req.Create.Name, Start: started})
	defer func() { // registered first: runs after the undo below, with its error
		endJob(Cancelled(ctx, err), func(r *JobRecord) {
			if made != nil {
				r.Target, r.Datastore = made.VM, made.Datastore
			}
		})
	}()
	cfg := req.Config
	if cfg == nil {
		if cfg, err = PointVMConfig(ctx, repo, p); err != nil {
			return nil, err
		}
	}
	for _, d := range cfg.Disks {
		if _, ok := p.Disk(d.Name); !ok {
			return nil, fmt.Errorf("disk %s of VM %s: %w (point %s holds %s): give a --vm-config without it", d.Name, p.VM, ErrDiskNotInPoint, p.ID, diskNames(p))
		}
	}
	if err := checkNetworkMap(cfg, req.Create.Networks); err != nil {
		return nil, err
	}
	allow := nfsserve.NewAllowList(req.Allow)
	exp, err := nfsserve.Open(ctx, nfsserve.Options{SessionDir: req.SessionDir, Point: p, Logger: log, Allow: allow,
		OpenDisk: func(ctx context.Context, disk string) (nbdserve.Source, error) { return repo.OpenDisk(ctx, p, disk) }})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &InstantSession{Started: started, repoDir: repo.Dir(), hv: hv, exp: exp, dir: req.SessionDir, point: p, log: log, cancel: cancel, failed: make(chan error, 3)}
	serve := func(what string, f func() error) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := f(); err != nil && sctx.Err() == nil {
				s.failed <- fmt.Errorf("%s: %w", what, err)
			}
		}()
	}
	serve("NFS server", func() error { return exp.Serve(sctx, req.NFS) })
	serve("MOUNT server", func() error { return exp.ServeMount(sctx, req.Mount, nil) })
	if req.Portmap != nil || req.PortmapUDP != nil {
		pm := &nfsserve.Portmapper{NFSPort: req.NFS.Addr().(*net.TCPAddr).Port, MountPort: req.Mount.Addr().(*net.TCPAddr).Port, Logger: log, Allow: allow}
		serve("portmapper", func() error { return pm.Serve(sctx, req.Portmap, req.PortmapUDP) })
	}
	// undo: what was made, in reverse order
	cleanup := context.WithoutCancel(ctx)
	defer func() {
		if err != nil {
			if s.ref.Value != "" {
				if derr := hv.DestroyVM(cleanup, s.ref); derr != nil {
					log.Error("removing the instant VM failed", "vm", s.VM, "err", derr)
					err = fmt.Errorf("%w (and removing VM %s failed: %v; run cairn restore cleanup)", err, s.VM, derr)
				}
			}
			if s.ds != nil {
				if uerr := hv.UnmountNFS(cleanup, s.ds); uerr != nil {
					log.Error("removing the NFS datastore failed", "datastore", s.ds.Name, "err", uerr)
					err = fmt.Errorf("%w (and removing datastore %s failed: %v; run cairn restore cleanup)", err, s.ds.Name, uerr)
				}
			}
			s.stopExport()
		}
	}()
	spec := req.Create
	spec.Config = cfg
	host, err := hv.InstantHost(ctx, spec)
	if err != nil {
		return nil, err
	}
	s.Host = host
	if len(req.Allow) == 0 {
		allow.Set(instantAllow(ctx, host, log)) // restore_instant_allow.go
	}
	dsName := instantDatastoreName(p)
	if s.ds, err = hv.MountNFS(ctx, host, dsName, req.RemoteHost, nfsserve.ExportPath); err != nil {
		return nil, err
	}
	s.Datastore = dsName
	log.Info("NFS datastore mounted", "datastore", dsName, "host", host, "remote", req.RemoteHost+":"+nfsserve.ExportPath)
	files := map[string]string{}
	for _, d := range exp.Disks() {
		files[d.Name] = fmt.Sprintf("[%s] %s", dsName, d.Descriptor)
	}
	job := make([]byte, 6)
	rand.Read(job)
	spec.Host, spec.Cluster, spec.Datastore = host, "", dsName
	spec.JobID = "instant-" + hex.EncodeToString(job)
	spec.Provisioning = ""
	created, err := hv.CreateVMOnDisks(ctx, spec, files)
	if err != nil {
		return nil, err
	}
	s.ref, s.VM, s.MoRef = created.Ref, created.Name, created.Ref.Value
	log.Info("instant VM registered", "vm", s.VM, "moref", s.MoRef, "datastore", dsName)
	if req.PowerOn {
		if err := hv.PowerOn(ctx, s.ref); err != nil {
			return nil, fmt.Errorf("power on %s: %w", s.VM, err)
		}
		log.Info("instant VM powered on", "vm", s.VM)
	}
	made = s
	return s, nil
}

// Failed delivers an error when the export stops serving on its own (a
// listener failed): the VM's disks are gone from under it.
func (s *InstantSession) Failed() <-chan error { return s.failed }

// stopExport stops serving and closes the overlays.
func (s *InstantSession) stopExport() {
	s.cancel()
	s.wg.Wait()
	if err := s.exp.Close(); err != nil {
		s.log.Error("closing the overlays failed", "err", err)
	}
}

// Migrate moves the running VM's files and disks to datastore (Storage
// vMotion: RelocateVM_Task), then removes the NFS datastore, ends the
// export and deletes the session directory; the VM is an ordinary VM
// afterwards (restore marker removed, annotation set). A failed move
// leaves the session running (the VM still runs from the export).
func (s *InstantSession) Migrate(ctx context.Context, datastore string) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	endJob := s.job("migrate", datastore)
	defer func() { endJob(err) }()
	s.log.Info("moving the instant VM to production storage", "vm", s.VM, "datastore", datastore)
	if err := s.hv.RelocateVM(ctx, s.ref, datastore); err != nil {
		s.mu.Lock()
		s.ended = false
		s.mu.Unlock()
		return fmt.Errorf("migrate %s to %s: %w (the VM still runs from the backup: retry, or stop the session)", s.VM, datastore, err)
	}
	cleanup := context.WithoutCancel(ctx)
	var errs []error
	note := fmt.Sprintf("restored by cairn (instant recovery) from %s point %s", s.point.VM, s.point.ID)
	if err := s.hv.FinishRestore(cleanup, s.ref, note); err != nil {
		errs = append(errs, err)
	}
	if err := s.hv.UnmountNFS(cleanup, s.ds); err != nil {
		errs = append(errs, fmt.Errorf("%w (run cairn restore cleanup)", err))
	}
	s.setBytesWritten(s.OverlayBytes())
	s.stopExport()
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Stop ends the session without keeping the VM: powers it off, deletes
// it, removes the NFS datastore, stops the export and deletes the session
// directory (the overlays: what the VM wrote is gone). Every step is
// tried; the errors are joined.
func (s *InstantSession) Stop(ctx context.Context) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	endJob := s.job("stop", s.Datastore)
	defer func() { endJob(err) }()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var errs []error
	if err := s.hv.DestroyVM(ctx, s.ref); err != nil {
		errs = append(errs, fmt.Errorf("remove VM %s: %w (run cairn restore cleanup)", s.VM, err))
	}
	if err := s.hv.UnmountNFS(ctx, s.ds); err != nil {
		errs = append(errs, fmt.Errorf("%w (run cairn restore cleanup)", err))
	}
	s.setBytesWritten(s.OverlayBytes())
	s.stopExport()
	if len(errs) == 0 {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// job records a step of the session in the job log (kind instant) and
// returns the function that records its end; BytesWritten is what the
// overlays hold when the step ends (read before they are deleted).
func (s *InstantSession) job(action, datastore string) func(error) {
	end := StartJob(s.repoDir, JobRecord{Kind: JobInstant, Action: action, VM: s.point.VM, Point: s.point.ID, Target: s.VM, Datastore: datastore})
	return func(err error) {
		end(err, func(r *JobRecord) {
			s.mu.Lock()
			r.BytesWritten = s.bytesWritten
			s.mu.Unlock()
		})
	}
}

// OverlayBytes is the space the VM's writes take in the session's
// overlays now (0 once the session ended).
func (s *InstantSession) OverlayBytes() int64 { return nfsserve.OverlayBytes(s.dir) }

// Ended reports whether Migrate or Stop ended the session (a failed
// Storage vMotion leaves it running).
func (s *InstantSession) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// BytesWritten is what the VM's writes take in the overlays: now while
// the session runs, at its end afterwards.
func (s *InstantSession) BytesWritten() int64 {
	s.mu.Lock()
	n, ended := s.bytesWritten, s.ended
	s.mu.Unlock()
	if ended && n > 0 {
		return n
	}
	return s.OverlayBytes()
}

func (s *InstantSession) setBytesWritten(n int64) {
	s.mu.Lock()
	s.bytesWritten = n
	s.mu.Unlock()
}

// ErrSessionEnded means the session was migrated or stopped already.
var ErrSessionEnded = errors.New("the instant recovery session has ended")

func (s *InstantSession) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return ErrSessionEnded
	}
	s.ended = true
	return nil
}

// CleanupInstantDatastores removes the NFS datastores instant recovery
// mounted (cairn-*) that no VM uses any more (the VMs of ended sessions
// are removed by CleanupRestores first); a datastore still in use is left.
func CleanupInstantDatastores(ctx context.Context, hv InstantHypervisor, log *slog.Logger) ([]string, error) {
	list, err := hv.FindNFSDatastores(ctx, InstantDatastorePrefix)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, ds := range list {
		if err := hv.UnmountNFS(ctx, &ds); err != nil {
			log.Info("NFS datastore of instant recovery left alone (in use?)", "datastore", ds.Name, "host", ds.Host, "err", err)
			continue
		}
		log.Warn("removed an NFS datastore left by instant recovery", "datastore", ds.Name, "host", ds.Host)
		removed = append(removed, ds.Name)
	}
	return removed, nil
}

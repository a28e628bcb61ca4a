package esxsim

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// Sim is a running simulated vCenter (one datacenter, Options.Hosts ESXi
// hosts, one local datastore on a real directory mounted on all of them)
// reachable over HTTPS: SOAP on /sdk, the vSphere Automation API (tags) on
// /rest and /api.
type Sim struct {
	// URL is the SDK endpoint, https://127.0.0.1:PORT/sdk, without credentials.
	URL *url.URL
	// User and Password are the credentials Login accepts.
	User     string
	Password string
	// Thumbprint is the SHA-256 thumbprint of the server certificate,
	// colon-separated upper-case hex as vSphere shows it.
	Thumbprint string
	// CertificatePEM is the server certificate (valid for 127.0.0.1), for
	// clients that verify the chain instead of pinning the thumbprint.
	CertificatePEM []byte
	// Datacenter, Host and Datastore are the inventory names; Host is the
	// first host, Hosts[0].
	Datacenter string
	Host       string
	Datastore  string
	// Hosts are the ESXi host names, indexed as VMSpec.Host.
	Hosts []string
	// DatastoreDir is the local directory backing Datastore.
	DatastoreDir string

	log      *slog.Logger
	model    *simulator.Model
	server   *simulator.Server
	inproc   *vim25.Client // in-process client for back doors
	router   *router
	maxAreas int
	ownsDir  bool
	// dsDirs maps every datastore's name to its local directory;
	// extraDirs are those Start made for Options.ExtraDatastores.
	dsDirs    map[string]string
	extraDirs []string

	mu        sync.Mutex
	vms       map[string]*vmState // by name
	byRef     map[string]*vmState // by moref value
	snapshots map[string]*snapState
	journal   []JournalEntry
	closed    bool
	// dsFree is the datastore space left for new thick disks when
	// dsLimited (SetDatastoreFree).
	dsFree    int64
	dsLimited bool
	// leases maps HttpNfcLease moref values of imports to their VM's.
	leases map[string]string
	// denyImport makes ImportVApp fail (SetDenyImport).
	denyImport bool
	// nas is the NFS datastores (nas.go).
	nas *nasState
}

// vmState is what the simulator knows about one VM beyond vcsim's object.
type vmState struct {
	name        string
	ref         types.ManagedObjectReference
	hwVersion   int
	failQuiesce bool
	cbt         bool
	disks       []*diskState
	nextSnap    int
	attached    map[string]bool // datastore paths of disks attached from elsewhere (HotAdd)
	// snapFault makes CreateSnapshot fail with it (SetSnapshotFault).
	snapFault types.BaseMethodFault
}

// diskState is one VM disk: its files and its change tracking.
type diskState struct {
	vm         *vmState
	index      int
	key        int32
	controller string
	uuid       string
	dsPath     string // [datastore1] vm1/vm1.vmdk
	descPath   string
	flatPath   string
	size       int64
	track      tracking
	// mode is the disk mode and rdm the RDM compatibility mode ("" for a
	// virtual disk) (edges.go).
	mode string
	rdm  string
}

// snapState is a snapshot taken through the API: its frozen disks.
type snapState struct {
	ref    types.ManagedObjectReference
	vm     *vmState
	parent string // moref value of the parent snapshot, "" for a root
	name   string
	disks  []*frozenDisk
}

// frozenDisk is a disk's copy made when its snapshot was taken.
type frozenDisk struct {
	disk     *diskState
	key      int32
	dsPath   string
	descPath string
	flatPath string
	size     int64
	track    frozenTracking
	// allocated caches the "*" answer: a frozen disk never changes.
	allocated []int64
	scanned   bool
}

// Start builds the inventory described by opts and serves it on 127.0.0.1.
func Start(ctx context.Context, opts Options) (*Sim, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("esxsim options: %w", err)
	}
	s := &Sim{
		User:      o.User,
		Password:  o.Password,
		Datastore: o.DatastoreName,
		log:       o.Logger,
		maxAreas:  o.MaxChangedAreas,
		vms:       map[string]*vmState{},
		byRef:     map[string]*vmState{},
		leases:    map[string]string{},
		snapshots: map[string]*snapState{},
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.DatastoreDir == "" {
		dir, err := os.MkdirTemp("", "esxsim-ds-")
		if err != nil {
			return nil, fmt.Errorf("datastore dir: %w", err)
		}
		o.DatastoreDir, s.ownsDir = dir, true
	} else if err := os.MkdirAll(o.DatastoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("datastore dir: %w", err)
	}
	if s.DatastoreDir, err = filepath.Abs(o.DatastoreDir); err != nil {
		return nil, fmt.Errorf("datastore dir: %w", err)
	}
	s.dsDirs = map[string]string{s.Datastore: s.DatastoreDir}
	for _, n := range o.ExtraDatastores {
		dir, err := os.MkdirTemp("", "esxsim-ds-"+n+"-")
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("datastore %s dir: %w", n, err)
		}
		s.dsDirs[n] = dir
		s.extraDirs = append(s.extraDirs, dir)
	}
	if err := s.start(ctx, o); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sim) start(ctx context.Context, o Options) error {
	m := simulator.VPX()
	m.Autostart = false
	m.Portgroup = o.DVPortgroups // distributed port groups DC0_DVPG0, ...
	m.Cluster = 0
	m.ClusterHost = 0
	m.Host = o.Hosts
	m.Datastore = 0
	m.Machine = 0
	if err := m.Create(); err != nil {
		return fmt.Errorf("create simulator model: %w", err)
	}
	s.model = m
	cert, err := newServerCert()
	if err != nil {
		return err
	}
	s.Thumbprint = Thumbprint(cert.Certificate[0])
	s.CertificatePEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	m.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	m.Service.Listen = &url.URL{Host: o.ListenAddr, User: url.UserPassword(o.User, o.Password)}
	m.Service.RegisterEndpoints = true // the vAPI simulator (tags.go)
	s.router = &router{Self: types.ManagedObjectReference{Type: "EsxsimRouter", Value: "esxsim-router"}, sim: s}
	m.Map().Put(s.router)
	m.Map().Handler = s.route

	s.inproc, err = vim25.NewClient(ctx, m.Service)
	if err != nil {
		return fmt.Errorf("in-process client: %w", err)
	}
	if err := s.buildInventory(ctx, o); err != nil {
		return err
	}
	if s.server, err = newServer(m.Service); err != nil {
		return fmt.Errorf("listen on %s: %w", o.ListenAddr, err)
	}
	// Uploads of HttpNfcLeases become real disk files (vcsim's /nfc/
	// handler, which stays for GET, only counts the bytes).
	m.Service.ServeMux.HandleFunc("PUT /nfc/", s.serveNFCUpload)
	m.Service.ServeMux.HandleFunc("POST /nfc/", s.serveNFCUpload)
	// No connection has been accepted yet, so the server reads ErrorLog
	// only after this write.
	s.server.Server.Config.ErrorLog = log.New(httpErrorFilter{s.log}, "", 0)
	u := *s.server.URL
	u.User = nil
	s.URL = &u
	if err := s.attachSpecTags(ctx, o.VMs); err != nil {
		return err
	}
	s.log.Info("esxsim started", "url", s.URL.String(), "datastore", s.DatastoreDir, "vms", len(s.vms))
	return nil
}

// Close stops the server and removes the simulator's temporary files. The
// datastore directory is removed only when Start made it.
func (s *Sim) Close() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if closed {
		return
	}
	if s.server != nil {
		s.server.Close()
	}
	if s.model != nil {
		s.model.Remove()
	}
	if s.ownsDir {
		_ = os.RemoveAll(s.DatastoreDir)
	}
	for _, d := range s.extraDirs {
		_ = os.RemoveAll(d)
	}
}

// DatastoreDirOf returns the local directory of the named datastore (the
// default one or one of Options.ExtraDatastores).
func (s *Sim) DatastoreDirOf(name string) (string, bool) {
	d, ok := s.dsDirs[name]
	return d, ok
}

// ClientURL returns URL with the credentials set, as govmomi.NewClient wants it.
func (s *Sim) ClientURL() *url.URL {
	u := *s.URL
	u.User = url.UserPassword(s.User, s.Password)
	return &u
}

// VMNames lists the simulated VMs (including the proxy VM) in creation order.
func (s *Sim) VMNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.vms))
	for _, vm := range s.vmsInOrder() {
		names = append(names, vm.name)
	}
	return names
}

func (s *Sim) vmsInOrder() []*vmState {
	out := make([]*vmState, 0, len(s.vms))
	for _, vm := range s.vms {
		out = append(out, vm)
	}
	// moref values are vm-N with increasing N: sort by length then value.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && refLess(out[j].ref.Value, out[j-1].ref.Value); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func refLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// VMRef returns the managed object reference of the named VM.
func (s *Sim) VMRef(name string) (types.ManagedObjectReference, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vm, err := s.vmLocked(name)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	return vm.ref, nil
}

// VM returns a govmomi object for the named VM bound to client c.
func (s *Sim) VM(c *vim25.Client, name string) (*object.VirtualMachine, error) {
	ref, err := s.VMRef(name)
	if err != nil {
		return nil, err
	}
	return object.NewVirtualMachine(c, ref), nil
}

// ErrNotFound is returned by back doors for an unknown VM, disk or device.
var ErrNotFound = errors.New("not found")

func (s *Sim) vmLocked(name string) (*vmState, error) {
	vm, ok := s.vms[name]
	if !ok {
		return nil, fmt.Errorf("vm %q: %w", name, ErrNotFound)
	}
	return vm, nil
}

func (s *Sim) diskLocked(vmName string, disk int) (*diskState, error) {
	vm, err := s.vmLocked(vmName)
	if err != nil {
		return nil, err
	}
	if disk < 0 || disk >= len(vm.disks) {
		return nil, fmt.Errorf("vm %q disk %d: %w", vmName, disk, ErrNotFound)
	}
	return vm.disks[disk], nil
}

// record appends to the journal; s.mu must be held.
func (s *Sim) record(e JournalEntry) {
	e.Seq = len(s.journal) + 1
	e.Time = time.Now()
	s.journal = append(s.journal, e)
}

// newServer starts vcsim's HTTPS server, turning its panic on a busy or
// invalid listen address into an error.
func newServer(svc *simulator.Service) (srv *simulator.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return svc.NewServer(), nil
}

// httpErrorFilter passes the HTTPS server's error lines to the sim's
// logger, except the handshakes that govmomi clients pinned to a
// thumbprint abort on purpose: they try the system CAs first, reject the
// self-signed certificate, and then reconnect checking the thumbprint.
type httpErrorFilter struct{ log *slog.Logger }

func (f httpErrorFilter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if !(strings.Contains(line, "TLS handshake error") && strings.Contains(line, "bad certificate")) {
		f.log.Warn(line, "component", "https")
	}
	return len(p), nil
}

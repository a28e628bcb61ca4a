package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

// VMPrefix starts the name of every lab VM: lab-vm-1, lab-vm-2, ...
const VMPrefix = "lab-vm-"

// Defaults used when the matching Options field is zero.
const (
	DefaultVMs         = 3
	DefaultDiskSize    = 288 << 20
	DefaultInterval    = 5 * time.Second
	DefaultServeListen = "127.0.0.1:8480"
	DefaultSchedule    = "30s"
)

// The lab's inventory: its VMs are spread over Hosts ESXi hosts, live in
// the VM folder Folder and carry the vSphere tag Tag (category:name).
const (
	Hosts  = 2
	Folder = "lab"
	Tag    = "backup:daily"
)

// Options configures a lab.
type Options struct {
	// Dir holds everything the lab makes: datastore/ (the VMs' disk files),
	// guest/ (the guest writer's working images), journal/, credentials,
	// cairn.yaml (naming repo/ and mnt/ for cairn serve). It is created if
	// missing; datastore/, guest/ and journal/ are emptied on Start.
	Dir string
	// VMs is the number of VMs (default DefaultVMs). Even-numbered VMs get
	// a second (data) disk.
	VMs int
	// DiskSize is the size of each VM's system disk, a multiple of 1 MiB,
	// at least MinDiskSize (default DefaultDiskSize). Data disks are half
	// as big (at least 96 MiB). go-diskfs picks 512-byte clusters for
	// FAT32 volumes up to 260 MiB and 4 KiB ones above: bigger system
	// disks make the guest writer cheaper (a smaller FAT to rewrite).
	DiskSize int64
	// Interval is the guest writer's period (default DefaultInterval).
	Interval time.Duration
	// Listen is the simulated vCenter's address (default "127.0.0.1:0").
	Listen string
	// ServeListen and Schedule go into cairn.yaml (defaults
	// DefaultServeListen, DefaultSchedule).
	ServeListen string
	Schedule    string
	// Logger receives the lab's log lines (default: discarded).
	Logger *slog.Logger
}

// VM is one lab virtual machine.
type VM struct {
	Name string
	// Disks are the VM's disks as the simulator reports them.
	Disks []esxsim.DiskInfo
	// Journal is the VM's journal file (JSON lines of JournalEntry).
	Journal string
}

// Lab is a running simulated vCenter with VMs whose guests keep writing.
type Lab struct {
	// URL is the SDK endpoint, https://127.0.0.1:PORT/sdk.
	URL        string
	User       string
	Password   string
	Thumbprint string
	// Dir is Options.Dir made absolute.
	Dir string
	// CredentialsFile holds User and Password on two lines (mode 0600).
	CredentialsFile string
	// ConfigFile is Dir/cairn.yaml, ready for cairn serve.
	ConfigFile string
	// VMs lists the lab's VMs in order.
	VMs []VM

	sim     *esxsim.Sim
	log     *slog.Logger
	guests  []*guest
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.Once
}

// Start builds the lab described by opts and starts its guest writers.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	o, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	l := &Lab{Dir: o.Dir, log: o.Logger}
	for _, sub := range []string{"datastore", "guest", "journal"} {
		p := filepath.Join(o.Dir, sub)
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("clean %s: %w", p, err)
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", p, err)
		}
	}
	specs := make([]esxsim.VMSpec, o.VMs)
	for i := range specs {
		n := i + 1
		// Two ESXi hosts, one folder, one tag: the cairn.yaml job selects
		// the VMs by their tag and caps backups per host.
		specs[i] = esxsim.VMSpec{Name: fmt.Sprintf("%s%d", VMPrefix, n), ChangeTracking: true,
			Disks: []esxsim.DiskSpec{{Size: o.DiskSize}}, Host: i % Hosts, Folder: Folder, Tags: []string{Tag}}
		if n%2 == 0 {
			specs[i].Disks = append(specs[i].Disks, esxsim.DiskSpec{Size: dataDiskSize(o.DiskSize)})
		}
	}
	sim, err := esxsim.Start(ctx, esxsim.Options{
		ListenAddr: o.Listen, DatastoreDir: filepath.Join(o.Dir, "datastore"), VMs: specs, Logger: o.Logger, Hosts: Hosts,
	})
	if err != nil {
		return nil, fmt.Errorf("start simulated vCenter: %w", err)
	}
	l.sim = sim
	l.URL, l.User, l.Password, l.Thumbprint = sim.URL.String(), sim.User, sim.Password, sim.Thumbprint
	if err := l.setUp(ctx, o, specs); err != nil {
		l.Close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	for i, g := range l.guests {
		// Spread the guests over the interval: their copies into the
		// running disks take the simulator's lock in turn.
		delay := o.Interval * time.Duration(i) / time.Duration(len(l.guests))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			g.run(wctx, delay, o.Interval)
		}()
	}
	l.log.Info("lab ready", "url", l.URL, "vms", len(l.VMs), "config", l.ConfigFile)
	return l, nil
}

// setUp fills the disks, then writes the credentials and cairn.yaml.
func (l *Lab) setUp(ctx context.Context, o Options, specs []esxsim.VMSpec) error {
	for i, spec := range specs {
		if err := ctx.Err(); err != nil {
			return err
		}
		g, err := newGuest(ctx, l.sim, o.Dir, spec.Name, i+1, len(spec.Disks), l.log)
		if err != nil {
			return err
		}
		l.guests = append(l.guests, g)
		disks, err := l.sim.Disks(spec.Name)
		if err != nil {
			return fmt.Errorf("disks of %s: %w", spec.Name, err)
		}
		l.VMs = append(l.VMs, VM{Name: spec.Name, Disks: disks, Journal: g.journalPath})
	}
	l.CredentialsFile = filepath.Join(o.Dir, "credentials")
	if err := writeFileAtomic(l.CredentialsFile, []byte(l.User+"\n"+l.Password+"\n"), 0o600); err != nil {
		return err
	}
	data, err := marshalConfig(l.serveConfig(o.ServeListen, o.Schedule))
	if err != nil {
		return err
	}
	l.ConfigFile = filepath.Join(o.Dir, "cairn.yaml")
	return writeFileAtomic(l.ConfigFile, data, 0o644)
}

// Sim returns the simulator, for tests that want its back doors.
func (l *Lab) Sim() *esxsim.Sim { return l.sim }

// Close stops the guest writers and the simulated vCenter and removes the
// disk files (datastore/ and guest/). The journal, credentials and
// cairn.yaml stay.
func (l *Lab) Close() error {
	var errs []error
	l.closeMu.Do(func() {
		if l.cancel != nil {
			l.cancel()
		}
		l.wg.Wait()
		for _, g := range l.guests {
			errs = append(errs, g.close())
		}
		if l.sim != nil {
			l.sim.Close()
		}
		for _, sub := range []string{"guest", "datastore"} {
			errs = append(errs, os.RemoveAll(filepath.Join(l.Dir, sub)))
		}
	})
	return errors.Join(errs...)
}

func withDefaults(o Options) (Options, error) {
	if o.Dir == "" {
		return o, errors.New("lab: Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, fmt.Errorf("lab dir %s: %w", o.Dir, err)
	}
	o.Dir = dir
	if o.VMs == 0 {
		o.VMs = DefaultVMs
	}
	if o.VMs < 1 || o.VMs > 50 {
		return o, fmt.Errorf("lab: %d VMs: use 1 to 50", o.VMs)
	}
	if o.DiskSize == 0 {
		o.DiskSize = DefaultDiskSize
	}
	if o.DiskSize < MinDiskSize || o.DiskSize%(1<<20) != 0 {
		return o, fmt.Errorf("lab: disk size %d: use a multiple of 1 MiB of at least %d MiB", o.DiskSize, MinDiskSize>>20)
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Interval < 10*time.Millisecond {
		return o, fmt.Errorf("lab: guest writer interval %s is too short (at least 10ms)", o.Interval)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.ServeListen == "" {
		o.ServeListen = DefaultServeListen
	}
	if o.Schedule == "" {
		o.Schedule = DefaultSchedule
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return o, fmt.Errorf("create lab dir: %w", err)
	}
	return o, nil
}

// dataDiskSize is half the system disk, at least room for a FAT32 and an
// ext4 partition.
func dataDiskSize(system int64) int64 {
	return max(MinDiskSize+ext4Size, (system/2)&^(1<<20-1))
}

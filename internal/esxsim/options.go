package esxsim

import (
	"fmt"
	"log/slog"
	"strings"
)

// Controller names accepted in DiskSpec.Controller.
const (
	ControllerSCSI = "scsi" // ParaVirtual SCSI, devices scsi0:N (the default)
	ControllerSATA = "sata" // AHCI, devices sata0:N
	ControllerNVMe = "nvme" // NVMe, devices nvme0:N
)

// Defaults used when the matching Options field is zero.
const (
	DefaultUser            = "administrator@vsphere.local"
	DefaultPassword        = "cairn-esxsim"
	DefaultDatastore       = "datastore1"
	DefaultHardwareVersion = "vmx-19"
	DefaultDiskSize        = 64 << 20
	DefaultMaxChangedAreas = 64
)

// Options configures a simulated vCenter: one datacenter, Hosts ESXi hosts
// and one local datastore mounted on every host.
type Options struct {
	// ListenAddr is the TCP address to serve on (default "127.0.0.1:0", a
	// free port). The lab may pin a port, e.g. "127.0.0.1:8989".
	ListenAddr string

	// User and Password are the only credentials Login accepts.
	// Defaults: DefaultUser, DefaultPassword.
	User     string
	Password string

	// DatastoreDir is the real directory holding the datastore's files.
	// Empty: a temporary directory that Close removes.
	DatastoreDir string
	// DatastoreName is the datastore's vSphere name (default "datastore1").
	DatastoreName string
	// ExtraDatastores names more local datastores, each on a temporary
	// directory of its own (removed by Close) and mounted on every host;
	// DiskSpec.Datastore puts a disk on one of them.
	ExtraDatastores []string

	// Hosts is the number of standalone ESXi hosts in the datacenter,
	// named DC0_H0, DC0_H1, ... (default 1). The datastore is mounted on
	// all of them; VMSpec.Host picks where a VM runs.
	Hosts int

	// VMs lists the virtual machines to create. When empty, NumVMs machines
	// named vm1..vmN are made, each with DisksPerVM SCSI disks of DiskSize bytes.
	VMs        []VMSpec
	NumVMs     int   // default 1 (used only when VMs is empty)
	DisksPerVM int   // default 1 (used only when VMs is empty)
	DiskSize   int64 // default DefaultDiskSize (used only when VMs is empty)

	// ProxyVM, when set, adds a powered-on VM of that name with a SCSI
	// controller and no disks: the backup proxy for HotAdd.
	ProxyVM string

	// DVPortgroups adds that many distributed port groups (DC0_DVPG0,
	// DC0_DVPG1, ... on one distributed switch) beside "VM Network", for
	// restores that map networks (default 0).
	DVPortgroups int

	// MaxChangedAreas caps the extents one QueryChangedDiskAreas answer
	// returns (default DefaultMaxChangedAreas); callers must loop on startOffset.
	MaxChangedAreas int

	// Logger receives the simulator's own log lines (default: discarded).
	Logger *slog.Logger
}

// VMSpec describes one simulated virtual machine.
type VMSpec struct {
	Name string
	// Disks in order: disk index i in the back doors is Disks[i].
	Disks []DiskSpec
	// HardwareVersion such as "vmx-19" (default) or "vmx-04" (no CBT support).
	HardwareVersion string
	// FailQuiesce makes every quiesced CreateSnapshot fail with ApplicationQuiesceFault.
	FailQuiesce bool
	// PoweredOff leaves the VM powered off (default: powered on).
	PoweredOff bool
	// ChangeTracking starts the VM with changeTrackingEnabled=true.
	ChangeTracking bool
	// Host is the index of the ESXi host the VM runs on (runtime.host),
	// 0 <= Host < Options.Hosts (default 0).
	Host int
	// Folder is a folder path below the datacenter's VM folder ("prod" or
	// "prod/web"), created as needed; empty puts the VM in the VM folder.
	Folder string
	// ResourcePool names a resource pool below the host's root pool
	// (created as needed) the VM runs in; empty: the host's root pool.
	ResourcePool string
	// Tags are vSphere tags ("category:tag") attached to the VM through the
	// vSphere Automation API; categories and tags are created as needed.
	Tags []string
	// Template marks the VM as a template (it is then powered off).
	Template bool

	// Firmware is "bios" (default) or "efi"; SecureBoot needs "efi".
	Firmware   string
	SecureBoot bool
	// NumCPUs (default 1), CoresPerSocket (default NumCPUs) and MemoryMB
	// (default 512).
	NumCPUs        int32
	CoresPerSocket int32
	MemoryMB       int64
	// GuestID is the guest OS identifier (default otherLinux64Guest).
	GuestID string
	// SCSIController is the type of scsi0: "pvscsi" (default), "lsilogic",
	// "lsilogic-sas" or "buslogic".
	SCSIController string
	// NICs are the VM's network adapters (none by default).
	NICs []NICSpec
	// CDROM adds an IDE CD-ROM drive (ide0:0) with no media.
	CDROM bool
	// Annotation is the VM's notes.
	Annotation string
	// ExtraConfig are advanced settings (also written to the .vmx).
	ExtraConfig map[string]string
}

// NICSpec describes one network adapter of a VMSpec.
type NICSpec struct {
	// Type is "vmxnet3" (default), "e1000" or "e1000e".
	Type string
	// Network is the port group (default "VM Network").
	Network string
}

// DiskSpec describes one virtual disk of a VMSpec.
type DiskSpec struct {
	// Size in bytes, a multiple of 1 MiB (default DefaultDiskSize).
	Size int64
	// Controller is ControllerSCSI (default), ControllerSATA or ControllerNVMe.
	Controller string
	// Provisioning is "thin" (default), "thick" or "eager" (eagerly
	// zeroed thick); the flat file stays sparse either way.
	Provisioning string
	// Datastore is the datastore of the disk's files: one of
	// Options.ExtraDatastores, or "" for the default datastore.
	Datastore string
	// Mode is the disk mode: "persistent" (default),
	// "independent_persistent" or "independent_nonpersistent". As on
	// ESXi, snapshots leave independent disks out (edges.go).
	Mode string
	// RDM makes the disk a raw device mapping: RDMPhysical or RDMVirtual
	// (edges.go); "" is a virtual disk.
	RDM string
}

// withDefaults returns a copy of o with every zero field set and validates it.
func (o Options) withDefaults() (Options, error) {
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.Password == "" {
		o.Password = DefaultPassword
	}
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	if o.DatastoreName == "" {
		o.DatastoreName = DefaultDatastore
	}
	if o.Hosts <= 0 {
		o.Hosts = 1
	}
	dsNames := map[string]bool{o.DatastoreName: true}
	for _, n := range o.ExtraDatastores {
		if n == "" || strings.ContainsAny(n, "/[]") || dsNames[n] {
			return o, fmt.Errorf("extra datastore %q: empty, invalid or duplicate name", n)
		}
		dsNames[n] = true
	}
	for _, vm := range o.VMs {
		for i, d := range vm.Disks {
			if d.Datastore != "" && !dsNames[d.Datastore] {
				return o, fmt.Errorf("vm %q disk %d: datastore %q is neither %s nor one of ExtraDatastores", vm.Name, i, d.Datastore, o.DatastoreName)
			}
		}
	}
	if o.MaxChangedAreas <= 0 {
		o.MaxChangedAreas = DefaultMaxChangedAreas
	}
	if len(o.VMs) == 0 {
		n, disks, size := o.NumVMs, o.DisksPerVM, o.DiskSize
		if n <= 0 {
			n = 1
		}
		if disks <= 0 {
			disks = 1
		}
		if size <= 0 {
			size = DefaultDiskSize
		}
		for i := 1; i <= n; i++ {
			spec := VMSpec{Name: fmt.Sprintf("vm%d", i)}
			for range disks {
				spec.Disks = append(spec.Disks, DiskSpec{Size: size})
			}
			o.VMs = append(o.VMs, spec)
		}
	} else {
		o.VMs = append([]VMSpec(nil), o.VMs...)
	}
	seen := map[string]bool{}
	for i := range o.VMs {
		vm := &o.VMs[i]
		if vm.Name == "" || strings.ContainsAny(vm.Name, "/[]") {
			return o, fmt.Errorf("vm %d: invalid name %q", i, vm.Name)
		}
		if seen[vm.Name] || vm.Name == o.ProxyVM {
			return o, fmt.Errorf("vm %q: duplicate name", vm.Name)
		}
		seen[vm.Name] = true
		if vm.HardwareVersion == "" {
			vm.HardwareVersion = DefaultHardwareVersion
		}
		if _, err := hardwareVersionNumber(vm.HardwareVersion); err != nil {
			return o, fmt.Errorf("vm %q: %w", vm.Name, err)
		}
		if vm.Host < 0 || vm.Host >= o.Hosts {
			return o, fmt.Errorf("vm %q: host index %d out of range: the simulator has %d host(s), indexes 0..%d", vm.Name, vm.Host, o.Hosts, o.Hosts-1)
		}
		folder, err := cleanFolder(vm.Folder)
		if err != nil {
			return o, fmt.Errorf("vm %q: %w", vm.Name, err)
		}
		vm.Folder = folder
		vm.Tags = append([]string(nil), vm.Tags...)
		for _, tag := range vm.Tags {
			if _, _, err := splitTag(tag); err != nil {
				return o, fmt.Errorf("vm %q: %w", vm.Name, err)
			}
		}
		if vm.Template {
			vm.PoweredOff = true
		}
		if err := vm.withHardwareDefaults(); err != nil {
			return o, fmt.Errorf("vm %q: %w", vm.Name, err)
		}
		vm.Disks = append([]DiskSpec(nil), vm.Disks...)
		for j := range vm.Disks {
			d := &vm.Disks[j]
			if d.Size == 0 {
				d.Size = DefaultDiskSize
			}
			if d.Size < 0 || d.Size%(1<<20) != 0 {
				return o, fmt.Errorf("vm %q disk %d: size %d is not a positive multiple of 1 MiB", vm.Name, j, d.Size)
			}
			switch d.Provisioning {
			case "":
				d.Provisioning = "thin"
			case "thin", "thick", "eager":
			default:
				return o, fmt.Errorf("vm %q disk %d: unknown provisioning %q (thin, thick or eager)", vm.Name, j, d.Provisioning)
			}
			switch d.Controller {
			case "":
				d.Controller = ControllerSCSI
			case ControllerSCSI, ControllerSATA, ControllerNVMe:
			default:
				return o, fmt.Errorf("vm %q disk %d: unknown controller %q", vm.Name, j, d.Controller)
			}
		}
	}
	if strings.ContainsAny(o.ProxyVM, "/[]") {
		return o, fmt.Errorf("proxy vm: invalid name %q", o.ProxyVM)
	}
	return o, nil
}

// hardwareVersionNumber parses "vmx-NN".
func hardwareVersionNumber(v string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(v, "vmx-%d", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("hardware version %q is not of the form vmx-NN", v)
	}
	return n, nil
}

// cleanFolder validates a folder path below the VM folder and returns it
// without leading or trailing slashes.
func cleanFolder(folder string) (string, error) {
	f := strings.Trim(folder, "/")
	if f == "" {
		return "", nil
	}
	for _, part := range strings.Split(f, "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "[]") {
			return "", fmt.Errorf("invalid folder %q: want names separated by single slashes, like \"prod/web\"", folder)
		}
	}
	return f, nil
}

// splitTag splits "category:tag" at its first colon.
func splitTag(tag string) (category, name string, err error) {
	category, name, ok := strings.Cut(tag, ":")
	if !ok || strings.TrimSpace(category) == "" || strings.TrimSpace(name) == "" {
		return "", "", fmt.Errorf("invalid tag %q: want \"category:tag\"", tag)
	}
	return category, name, nil
}

// withHardwareDefaults fills and checks the hardware fields of a VMSpec.
func (vm *VMSpec) withHardwareDefaults() error {
	switch vm.Firmware {
	case "":
		vm.Firmware = "bios"
	case "bios", "efi":
	default:
		return fmt.Errorf("unknown firmware %q (bios or efi)", vm.Firmware)
	}
	if vm.SecureBoot && vm.Firmware != "efi" {
		return fmt.Errorf("secure boot needs efi firmware")
	}
	if vm.NumCPUs <= 0 {
		vm.NumCPUs = 1
	}
	if vm.CoresPerSocket <= 0 {
		vm.CoresPerSocket = vm.NumCPUs
	}
	if vm.NumCPUs%vm.CoresPerSocket != 0 {
		return fmt.Errorf("%d CPUs are not a multiple of %d cores per socket", vm.NumCPUs, vm.CoresPerSocket)
	}
	if vm.MemoryMB <= 0 {
		vm.MemoryMB = 512
	}
	switch vm.SCSIController {
	case "":
		vm.SCSIController = "pvscsi"
	case "pvscsi", "lsilogic", "lsilogic-sas", "buslogic":
	default:
		return fmt.Errorf("unknown SCSI controller %q (pvscsi, lsilogic, lsilogic-sas or buslogic)", vm.SCSIController)
	}
	vm.NICs = append([]NICSpec(nil), vm.NICs...)
	for i := range vm.NICs {
		n := &vm.NICs[i]
		switch n.Type {
		case "":
			n.Type = "vmxnet3"
		case "vmxnet3", "e1000", "e1000e":
		default:
			return fmt.Errorf("nic %d: unknown type %q (vmxnet3, e1000 or e1000e)", i, n.Type)
		}
		if n.Network == "" {
			n.Network = "VM Network"
		}
	}
	return nil
}

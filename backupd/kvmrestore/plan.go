package kvmrestore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// Guest OS families.
const (
	OSLinux   = "linux"
	OSWindows = "windows"
	OSOther   = "other"
)

// Buses (Spec.Bus).
const (
	BusAuto   = "auto"
	BusVirtio = "virtio" // virtio-blk
	BusSCSI   = "scsi"   // virtio-scsi
	BusSATA   = "sata"
)

// Disk formats (Spec.Format).
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// Domain types (Spec.DomainType).
const (
	DomainKVM  = "kvm"
	DomainQEMU = "qemu" // TCG: software emulation
)

// Network target kinds (see ParseNetworkTarget).
const (
	NetKindNetwork = "network"
	NetKindBridge  = "bridge"
	NetKindUser    = "user"
	NetKindNone    = "none"
)

// Errors.
var (
	// ErrUnmappedNetwork: a NIC's recorded network has no target.
	ErrUnmappedNetwork = errors.New("network without a target")
	// ErrExists: a file the restore would write is there already.
	ErrExists = errors.New("target file exists")
	// ErrBadSpec: a Spec field has a value outside its list.
	ErrBadSpec = errors.New("invalid restore option")
)

// UnmappedError lists the recorded networks (sorted, "" for a NIC with
// none) that have no target.
type UnmappedError struct{ Networks []string }

func (e *UnmappedError) Error() string {
	q := make([]string, len(e.Networks))
	for i, n := range e.Networks {
		q[i] = fmt.Sprintf("%q", n)
	}
	return fmt.Sprintf("%s: %s", ErrUnmappedNetwork, strings.Join(q, ", "))
}

// Unwrap makes errors.Is(err, ErrUnmappedNetwork) true.
func (e *UnmappedError) Unwrap() error { return ErrUnmappedNetwork }

// ExistsError names the file that is in the way.
type ExistsError struct{ Path string }

func (e *ExistsError) Error() string { return fmt.Sprintf("%s: %s", ErrExists, e.Path) }

// Unwrap makes errors.Is(err, ErrExists) true.
func (e *ExistsError) Unwrap() error { return ErrExists }

// NetworkTarget is where the NICs of one recorded network go.
type NetworkTarget struct {
	// Kind is NetKindNetwork, NetKindBridge, NetKindUser or NetKindNone;
	// Name the libvirt network or the bridge.
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
}

// String is the target as ParseNetworkTarget reads it.
func (t NetworkTarget) String() string {
	switch t.Kind {
	case NetKindBridge:
		return "bridge:" + t.Name
	case NetKindUser, NetKindNone:
		return t.Kind
	}
	return t.Name
}

// ParseNetworkTarget reads "NAME" (a libvirt network), "network:NAME",
// "bridge:BR", "user" or "none".
func ParseNetworkTarget(s string) (NetworkTarget, error) {
	k, v, ok := strings.Cut(s, ":")
	switch {
	case s == NetKindUser || s == NetKindNone:
		return NetworkTarget{Kind: s}, nil
	case ok && k == NetKindBridge && v != "":
		return NetworkTarget{Kind: NetKindBridge, Name: v}, nil
	case ok && k == NetKindNetwork && v != "":
		return NetworkTarget{Kind: NetKindNetwork, Name: v}, nil
	case !ok && s != "":
		return NetworkTarget{Kind: NetKindNetwork, Name: s}, nil
	}
	return NetworkTarget{}, fmt.Errorf("%w: network target %q: want a libvirt network name, network:NAME, bridge:BR, user or none", ErrBadSpec, s)
}

// Spec is what the caller chooses about the restored domain.
type Spec struct {
	// Name of the domain (default: the recorded VM name); the files are
	// Dir/Name.xml, Dir/Name-<disk>.<format>, Dir/Name_VARS.fd (UEFI).
	Name string
	Dir  string
	// Format is FormatQCOW2 (default) or FormatRaw.
	Format string
	// Bus is BusAuto (default), BusVirtio, BusSCSI or BusSATA.
	Bus string
	// DomainType is DomainKVM or DomainQEMU; "" detects (kvm where this
	// machine has hardware virtualization).
	DomainType string
	// Networks maps a recorded vSphere network name to its target;
	// NetworkDefault (optional) takes the NICs of every other network.
	Networks       map[string]NetworkTarget
	NetworkDefault *NetworkTarget
	// NewIdentity gives the domain new MAC addresses and a new SMBIOS
	// UUID (libvirt generates them) instead of the recorded ones.
	NewIdentity bool
	// SerialLog, when set, is a file that takes the serial console;
	// otherwise it is a pty (virsh console).
	SerialLog string
	// Force overwrites existing target files.
	Force bool
}

// PlannedDisk is one disk of the domain.
type PlannedDisk struct {
	// Name is the point's disk name; File the image written.
	Name string `json:"name"`
	File string `json:"file"`
	// Bus is the libvirt bus ("virtio", "scsi", "sata"); Dev the target
	// device name ("vda", "sda"); Controller the SCSI controller model
	// ("virtio-scsi", "vmpvscsi", "lsilogic"; "" for others).
	Bus        string `json:"bus"`
	Dev        string `json:"dev"`
	Controller string `json:"controller,omitempty"`
	BootOrder  int    `json:"boot_order"`
	// Recorded is the vSphere controller and unit ("pvscsi 0:1"); "" for
	// a disk the configuration does not name.
	Recorded string `json:"recorded,omitempty"`
}

// PlannedNIC is one network interface of the domain.
type PlannedNIC struct {
	Label string `json:"label,omitempty"`
	// Network is the recorded vSphere network, Target where it goes.
	Network string        `json:"network"`
	Target  NetworkTarget `json:"target"`
	// MAC is kept from the point ("" with Spec.NewIdentity: libvirt
	// picks one).
	MAC   string `json:"mac,omitempty"`
	Model string `json:"model"`
	// Connected is the recorded start-connected state (a NIC that was
	// not gets link state down).
	Connected bool `json:"connected"`
}

// Plan is the domain a restore writes.
type Plan struct {
	Name       string `json:"name"`
	DomainType string `json:"domain_type"`
	GuestOS    string `json:"guest_os"`
	Firmware   string `json:"firmware"`
	SecureBoot bool   `json:"secure_boot"`
	CPUs       int    `json:"cpus"`
	Sockets    int    `json:"sockets"`
	Cores      int    `json:"cores"`
	MemoryMB   int64  `json:"memory_mb"`
	// Format is the disks' image format (FormatQCOW2, FormatRaw).
	Format string        `json:"format"`
	Disks  []PlannedDisk `json:"disks"`
	CDROMs int           `json:"cdroms"`
	NICs   []PlannedNIC  `json:"nics"`
	// Loader and NVRAMTemplate are the OVMF files (UEFI); NVRAM the
	// domain's own copy of the variables.
	Loader        string `json:"loader,omitempty"`
	NVRAMTemplate string `json:"nvram_template,omitempty"`
	NVRAM         string `json:"nvram,omitempty"`
	XMLFile       string `json:"xml"`
	SerialLog     string `json:"serial_log,omitempty"`
	// NotCarried lists what the VM had that the domain does not;
	// Notes what was decided and why.
	NotCarried []string `json:"not_carried_over"`
	Notes      []string `json:"notes"`

	uuid string
	desc string
}

// GuestOS is the family of a recorded guest id (and full name):
// OSWindows, OSLinux or OSOther.
func GuestOS(cfg *vmconfig.Config) string {
	if cfg == nil {
		return OSOther
	}
	id := strings.ToLower(cfg.GuestID + " " + cfg.GuestFullName)
	if strings.Contains(id, "windows") || strings.HasPrefix(id, "win") {
		return OSWindows
	}
	for _, w := range []string{"linux", "debian", "ubuntu", "rhel", "red hat", "centos", "sles", "suse", "fedora", "oracle",
		"rocky", "alma", "coreos", "photon", "asianux", "mandrake", "mandriva", "turbolinux", "amazon"} {
		if strings.Contains(id, w) {
			return OSLinux
		}
	}
	return OSOther
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// MakePlan decides the domain for cfg (the point's configuration) and the
// point's disks (names, as the point lists them; the point's order).
// vmx is the recorded .vmx file (nil when the point has none): it tells
// the devices the configuration does not record (vTPM, passthrough).
// point and vm name the source in the domain's description.
func MakePlan(cfg *vmconfig.Config, disks []string, vmx []byte, spec Spec, vm, point string) (*Plan, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: no VM configuration", ErrBadSpec)
	}
	if spec.Dir != "" {
		// libvirt wants absolute paths
		abs, err := filepath.Abs(spec.Dir)
		if err != nil {
			return nil, err
		}
		spec.Dir = abs
	}
	if spec.SerialLog != "" {
		abs, err := filepath.Abs(spec.SerialLog)
		if err != nil {
			return nil, err
		}
		spec.SerialLog = abs
	}
	p := &Plan{Name: spec.Name, GuestOS: GuestOS(cfg), Firmware: cfg.Firmware, SecureBoot: cfg.SecureBoot,
		CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB, Format: spec.Format, SerialLog: spec.SerialLog,
		desc: fmt.Sprintf("restored by cairn from point %s of VM %s", point, vm)}
	if p.Name == "" {
		p.Name = cfg.Name
	}
	if p.Name == "" || strings.ContainsAny(p.Name, "/\x00") || strings.HasPrefix(p.Name, ".") {
		return nil, fmt.Errorf("%w: domain name %q: want a name without '/' that does not start with '.' (--name)", ErrBadSpec, p.Name)
	}
	if p.Format == "" {
		p.Format = FormatQCOW2
	}
	if p.Format != FormatQCOW2 && p.Format != FormatRaw {
		return nil, fmt.Errorf("%w: format %q: want qcow2 or raw", ErrBadSpec, spec.Format)
	}
	p.DomainType = spec.DomainType
	switch p.DomainType {
	case "":
		if accel, _ := boot.DetectAccel(); accel == "kvm" {
			p.DomainType = DomainKVM
		} else {
			p.DomainType = DomainQEMU
			p.Notes = append(p.Notes, "domain type qemu (software emulation): this machine has no usable KVM; on a KVM host change <domain type='qemu'> to 'kvm' or restore with --domain-type kvm")
		}
	case DomainKVM, DomainQEMU:
	default:
		return nil, fmt.Errorf("%w: domain type %q: want kvm or qemu", ErrBadSpec, spec.DomainType)
	}
	p.Sockets, p.Cores = cfg.CPUs, 1
	if cfg.CoresPerSocket > 0 {
		p.Sockets, p.Cores = cfg.CPUs/cfg.CoresPerSocket, cfg.CoresPerSocket
	}
	if !spec.NewIdentity && uuidRE.MatchString(strings.ReplaceAll(cfg.BIOSUUID, " ", "")) {
		p.uuid = strings.ReplaceAll(cfg.BIOSUUID, " ", "")
	}
	p.XMLFile = filepath.Join(spec.Dir, p.Name+".xml")
	if cfg.Firmware == vmconfig.FirmwareEFI {
		p.Loader, p.NVRAMTemplate = boot.OVMFFiles(cfg.SecureBoot)
		p.NVRAM = filepath.Join(spec.Dir, p.Name+"_VARS.fd")
		p.NotCarried = append(p.NotCarried, "the VMware NVRAM (UEFI variables, boot entries): the domain starts with OVMF's empty variables and boots the default loader (\\EFI\\BOOT\\BOOTX64.EFI); a guest without one needs its boot entry made again (efibootmgr, bcdboot)")
		if cfg.SecureBoot {
			p.Notes = append(p.Notes, "secure boot: on (OVMF with Microsoft's keys enrolled, SMM)")
		} else {
			p.Notes = append(p.Notes, "secure boot: off, as recorded")
		}
	}
	if err := p.planDisks(cfg, disks, spec); err != nil {
		return nil, err
	}
	if err := p.planNICs(cfg, spec); err != nil {
		return nil, err
	}
	p.NotCarried = append(p.NotCarried, vmxDevices(cfg, vmx)...)
	if p.GuestOS == OSWindows {
		p.Notes = append(p.Notes, "Windows guest: SATA disks and e1000e NICs work with Windows' own drivers; for virtio (faster) install the virtio-win drivers in the guest first, then restore again with --bus virtio")
	}
	p.Notes = append(p.Notes, "VMware Tools do nothing under KVM: remove them in the guest, install qemu-guest-agent")
	return p, nil
}

// devName is the n-th device name of a prefix: sda..sdz, sdaa...
func devName(prefix string, n int) string {
	s := ""
	for n++; n > 0; n = (n - 1) / 26 {
		s = string(rune('a'+(n-1)%26)) + s
	}
	return prefix + s
}

func (p *Plan) planDisks(cfg *vmconfig.Config, disks []string, spec Spec) error {
	bus := spec.Bus
	if bus == "" {
		bus = BusAuto
	}
	if !slices.Contains([]string{BusAuto, BusVirtio, BusSCSI, BusSATA}, bus) {
		return fmt.Errorf("%w: bus %q: want auto, virtio, scsi or sata", ErrBadSpec, spec.Bus)
	}
	if bus == BusAuto {
		switch p.GuestOS {
		case OSLinux:
			p.Notes = append(p.Notes, "Linux guest: disks on virtio-scsi (names stay /dev/sdX as on a VMware SCSI controller)")
		case OSWindows: // the driver note below says it
		default:
			p.Notes = append(p.Notes, "guest OS not known as Linux or Windows: each disk on the controller a boot check gives it")
		}
	}
	inPoint := map[string]bool{}
	for _, n := range disks {
		inPoint[n] = true
	}
	for _, d := range cfg.Disks {
		if !inPoint[d.Name] {
			why := d.NotBackedUp
			if why == "" {
				why = "not in the point"
			}
			p.NotCarried = append(p.NotCarried, fmt.Sprintf("disk %s (%s, %d bytes): %s: left out, the point holds no data of it", d.Name, d.ControllerType, d.Capacity, why))
		}
	}
	sd, vd := 0, 0
	for i, name := range boot.BootOrder(cfg, disks) {
		pd := PlannedDisk{Name: name, File: filepath.Join(spec.Dir, p.Name+"-"+vmconfig.SafeFileName(name)+"."+p.Format), BootOrder: i + 1}
		conf, ok := cfg.Disk(name)
		ctype := ""
		if ok {
			ct, _ := cfg.Controller(conf.ControllerKey)
			ctype = ct.Type
			pd.Recorded = fmt.Sprintf("%s %d:%d", ct.Type, ct.Bus, conf.Unit)
			if conf.RDM != "" {
				p.Notes = append(p.Notes, fmt.Sprintf("disk %s was a raw device mapping (%s): restored as a plain image of its contents", name, conf.RDM))
			}
		}
		b := bus
		if b == BusAuto {
			switch p.GuestOS {
			case OSLinux:
				b = BusSCSI
			case OSWindows:
				b = BusSATA
			default:
				b = BusSATA
				switch boot.QEMUController(ctype) {
				case "pvscsi":
					b, pd.Controller = BusSCSI, "vmpvscsi"
				case "lsi53c895a":
					b, pd.Controller = BusSCSI, "lsilogic"
				case "nvme":
					p.Notes = append(p.Notes, fmt.Sprintf("disk %s: NVMe has no libvirt disk bus here: SATA", name))
				}
				if !ok {
					// a boot check puts a disk the configuration does not name on pvscsi
					b, pd.Controller = BusSCSI, "vmpvscsi"
				}
			}
		}
		if b == BusSCSI && pd.Controller == "" {
			pd.Controller = "virtio-scsi"
		}
		pd.Bus = b
		if b == BusVirtio {
			pd.Dev, vd = devName("vd", vd), vd+1
		} else {
			pd.Dev, sd = devName("sd", sd), sd+1
		}
		p.Disks = append(p.Disks, pd)
	}
	for _, c := range cfg.CDROMs {
		p.CDROMs++
		if c.Backing == "iso" && c.ISO != "" {
			p.NotCarried = append(p.NotCarried, fmt.Sprintf("CD-ROM %s %d:%d: ISO image %s is on the vSphere datastore: the drive is empty (virsh change-media)", c.ControllerType, c.Bus, c.Unit, c.ISO))
		}
	}
	return nil
}

func (p *Plan) planNICs(cfg *vmconfig.Config, spec Spec) error {
	var unmapped []string
	for _, n := range cfg.NICs {
		t, ok := spec.Networks[n.Network]
		if !ok && spec.NetworkDefault != nil {
			t, ok = *spec.NetworkDefault, true
		}
		if !ok {
			if !slices.Contains(unmapped, n.Network) {
				unmapped = append(unmapped, n.Network)
			}
			continue
		}
		if t.Kind == NetKindNone {
			p.NotCarried = append(p.NotCarried, fmt.Sprintf("NIC %s on network %q: left out (mapped to none)", nicName(n), n.Network))
			continue
		}
		pn := PlannedNIC{Label: n.Label, Network: n.Network, Target: t, Connected: n.Connected}
		if !spec.NewIdentity {
			pn.MAC = strings.ToLower(n.MAC)
		}
		switch p.GuestOS {
		case OSLinux:
			pn.Model = "virtio"
		case OSWindows:
			pn.Model = "e1000e"
		default:
			pn.Model = boot.QEMUNIC(n.AdapterType)
		}
		if n.AdapterType == "sriov" {
			p.NotCarried = append(p.NotCarried, fmt.Sprintf("NIC %s: SR-IOV passthrough: an emulated %s NIC instead", nicName(n), pn.Model))
		}
		p.NICs = append(p.NICs, pn)
	}
	if len(unmapped) > 0 {
		sort.Strings(unmapped)
		return &UnmappedError{Networks: unmapped}
	}
	if spec.NewIdentity {
		p.Notes = append(p.Notes, "new identity: libvirt gives the NICs new MAC addresses and the domain a new UUID")
	} else if len(p.NICs) > 0 {
		p.Notes = append(p.Notes, "MAC addresses kept (the guest's network configuration and licences tied to them keep working; do not run it beside the original on one network: --mac new)")
	}
	return nil
}

func nicName(n vmconfig.NIC) string {
	if n.Label != "" {
		return fmt.Sprintf("%q", n.Label)
	}
	return fmt.Sprintf("%d", n.Key)
}

// vmxDevices lists the devices of the recorded .vmx (and extraConfig)
// that a libvirt domain does not get.
func vmxDevices(cfg *vmconfig.Config, vmx []byte) []string {
	kv := map[string]string{}   // lower-cased key -> value
	orig := map[string]string{} // lower-cased key -> key as written
	set := func(k, v string) {
		kv[strings.ToLower(k)], orig[strings.ToLower(k)] = v, k
	}
	for k, v := range cfg.ExtraConfig {
		set(k, v)
	}
	sc := bufio.NewScanner(bytes.NewReader(vmx))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			set(strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`))
		}
	}
	var out []string
	on := func(k string) bool { return strings.EqualFold(kv[k], "true") }
	if on("vtpm.present") {
		out = append(out, "vTPM: its secrets are sealed by vSphere's key provider; a guest that kept keys in it (BitLocker, LUKS with TPM) asks for its recovery key; add a new <tpm> if the guest wants one")
	}
	var keys []string
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		dev, ok := strings.CutSuffix(k, ".present")
		if !ok || !on(k) {
			continue
		}
		name, _ := strings.CutSuffix(orig[k], ".present")
		name, _ = strings.CutSuffix(name, ".Present")
		switch {
		case strings.HasPrefix(dev, "pcipassthru"):
			out = append(out, fmt.Sprintf("PCI passthrough device %s: a host device of the ESXi host; pass one of this host through with <hostdev> if needed", name))
		case dev == "vmci0":
			out = append(out, "VMCI (VMware-only guest/host channel)")
		case strings.HasPrefix(dev, "floppy"), strings.HasPrefix(dev, "serial"), strings.HasPrefix(dev, "parallel"), dev == "sound":
			out = append(out, fmt.Sprintf("%s (its backing on the ESXi host)", name))
		}
	}
	return out
}

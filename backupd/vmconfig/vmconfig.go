package vmconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// Attachment names of a point's VM files (see blockmap.Attachment).
const (
	AttachmentDir    = "vm"
	AttachmentConfig = AttachmentDir + "/config.json"
)

// VMXAttachment is the attachment name of the VM's .vmx file.
func VMXAttachment(name string) string { return AttachmentDir + "/" + SafeFileName(name) + ".vmx" }

// NVRAMAttachment is the attachment name of the VM's .nvram file.
func NVRAMAttachment(name string) string { return AttachmentDir + "/" + SafeFileName(name) + ".nvram" }

// SafeFileName turns a VM name into one path element: slashes, NULs and
// leading dots become "_".
func SafeFileName(name string) string {
	s := strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\\' {
			return '_'
		}
		return r
	}, name)
	if s == "" || strings.HasPrefix(s, ".") {
		s = "_" + strings.TrimLeft(s, ".")
	}
	return s
}

// Firmware kinds.
const (
	FirmwareBIOS = "bios"
	FirmwareEFI  = "efi"
)

// Controller types.
const (
	ControllerPVSCSI      = "pvscsi"
	ControllerLSILogic    = "lsilogic"
	ControllerLSILogicSAS = "lsilogic-sas"
	ControllerBusLogic    = "buslogic"
	ControllerAHCI        = "ahci"
	ControllerNVMe        = "nvme"
	ControllerIDE         = "ide"
)

// Disk provisioning kinds.
const (
	ProvisioningThin  = "thin"
	ProvisioningThick = "thick" // lazily zeroed
	ProvisioningEager = "eager" // eagerly zeroed thick
)

// Version is the current format of a Config document.
const Version = 1

// Config is a VM's configuration at backup time.
type Config struct {
	// Version of this document's format (Version).
	Version int    `json:"version"`
	Name    string `json:"name"`
	// BIOSUUID is vSphere's config.uuid (the SMBIOS UUID the guest sees);
	// InstanceUUID is config.instanceUuid (vCenter's identity of the VM).
	BIOSUUID        string `json:"bios_uuid,omitempty"`
	InstanceUUID    string `json:"instance_uuid,omitempty"`
	GuestID         string `json:"guest_id,omitempty"`
	GuestFullName   string `json:"guest_full_name,omitempty"`
	HardwareVersion string `json:"hardware_version,omitempty"`
	// Firmware is FirmwareBIOS or FirmwareEFI.
	Firmware       string `json:"firmware"`
	SecureBoot     bool   `json:"secure_boot"`
	CPUs           int    `json:"cpus"`
	CoresPerSocket int    `json:"cores_per_socket,omitempty"`
	MemoryMB       int64  `json:"memory_mb"`
	// Files are the datastore paths of the VM's .vmx and .nvram.
	VMXPath   string `json:"vmx_path,omitempty"`
	NVRAMPath string `json:"nvram_path,omitempty"`

	Controllers []Controller `json:"controllers"`
	Disks       []Disk       `json:"disks"`
	NICs        []NIC        `json:"nics"`
	CDROMs      []CDROM      `json:"cdroms,omitempty"`
	Annotation  string       `json:"annotation,omitempty"`
	// ExtraConfig holds the advanced settings that are not secrets;
	// DroppedExtraConfig names the keys SecretKey removed.
	ExtraConfig        map[string]string `json:"extra_config,omitempty"`
	DroppedExtraConfig []string          `json:"dropped_extra_config,omitempty"`
	// Placement is where the VM lived at backup time; nil in points made
	// before it was recorded and in imports without it. A restore puts
	// the VM back there by default (with each disk on its Datastore).
	Placement *Placement `json:"placement,omitempty"`
}

// Placement is where a VM lived in the vSphere inventory. Every field is
// optional; paths are inventory paths as vCenter shows them.
type Placement struct {
	// Datacenter is the name of the VM's datacenter.
	Datacenter string `json:"datacenter,omitempty"`
	// Folder is the inventory path of the VM's folder ("/DC0/vm/prod").
	Folder string `json:"folder,omitempty"`
	// ResourcePool is the inventory path of the VM's resource pool
	// ("/DC0/host/C1/Resources/web"); a host's or cluster's root pool
	// ends in "/Resources".
	ResourcePool string `json:"resource_pool,omitempty"`
	// Cluster is the name of the cluster the VM ran in ("" on a
	// standalone host).
	Cluster string `json:"cluster,omitempty"`
	// Host is the name of the ESXi host the VM ran on.
	Host string `json:"host,omitempty"`
	// Datastore holds the VM's files (.vmx, .nvram); each disk's own
	// datastore is Disk.Datastore.
	Datastore string `json:"datastore,omitempty"`
}

// Controller is a disk controller.
type Controller struct {
	Key  int32  `json:"key"`
	Type string `json:"type"`
	Bus  int32  `json:"bus"`
}

// Disk is a virtual disk.
type Disk struct {
	// Name is the disk's name in the point ("scsi0-0").
	Name string `json:"name"`
	Key  int32  `json:"key"`
	// ControllerKey is the Key of its Controller; ControllerType and Bus
	// repeat that controller's type and bus number.
	ControllerKey  int32  `json:"controller_key"`
	ControllerType string `json:"controller_type"`
	Bus            int32  `json:"bus"`
	Unit           int32  `json:"unit"`
	Label          string `json:"label,omitempty"`
	Capacity       int64  `json:"capacity"`
	Provisioning   string `json:"provisioning"`
	FileName       string `json:"file_name,omitempty"`
	// Datastore is the name of the datastore the disk's file was on (the
	// "[ds]" of FileName).
	Datastore string `json:"datastore,omitempty"`
	UUID      string `json:"uuid,omitempty"`
	Mode      string `json:"mode,omitempty"`
	// RDM is a raw device mapping's compatibility mode ("physicalMode",
	// "virtualMode") and RDMDevice the LUN it maps; both "" for a virtual
	// disk.
	RDM       string `json:"rdm,omitempty"`
	RDMDevice string `json:"rdm_device,omitempty"`
	// NotBackedUp says why the point holds no data of this disk: the
	// backup left it out ("independent", "rdm-physical", "excluded"; the
	// kinds of vsphere.Disk.SkipKind). A restore creates it empty, with
	// the same size and mode, and warns.
	NotBackedUp string `json:"not_backed_up,omitempty"`
}

// NIC is a network adapter.
type NIC struct {
	Key         int32  `json:"key"`
	Label       string `json:"label,omitempty"`
	AdapterType string `json:"adapter_type"`
	MAC         string `json:"mac,omitempty"`
	AddressType string `json:"address_type,omitempty"`
	Network     string `json:"network,omitempty"`
	Connected   bool   `json:"start_connected"`
}

// CDROM is a CD/DVD drive.
type CDROM struct {
	Key            int32  `json:"key"`
	ControllerKey  int32  `json:"controller_key"`
	ControllerType string `json:"controller_type,omitempty"`
	Bus            int32  `json:"bus"`
	Unit           int32  `json:"unit"`
	// Backing is "iso", "host", "client" or "none"; ISO the image's
	// datastore path for "iso".
	Backing   string `json:"backing"`
	ISO       string `json:"iso,omitempty"`
	Connected bool   `json:"start_connected"`
}

// ErrInvalid marks a configuration that fails Validate or Parse.
var ErrInvalid = errors.New("invalid VM configuration")

// FieldError names the field of a configuration that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("VM configuration: field %s: %s", e.Field, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var (
	controllerTypes   = []string{ControllerPVSCSI, ControllerLSILogic, ControllerLSILogicSAS, ControllerBusLogic, ControllerAHCI, ControllerNVMe, ControllerIDE}
	provisioningKinds = []string{ProvisioningThin, ProvisioningThick, ProvisioningEager}
	nicTypes          = []string{"vmxnet3", "vmxnet2", "vmxnet", "e1000", "e1000e", "pcnet32", "sriov"}
	macRE             = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
)

// Parse decodes a Config document strictly (unknown fields, trailing data
// and wrong types are errors naming the field) and validates it.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return nil, fieldErr(te.Field, "want a JSON %s, found %s", te.Type, te.Value)
		case errors.As(err, &se):
			return nil, fmt.Errorf("%w: not JSON: %v (at byte %d)", ErrInvalid, se, se.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: not JSON: the document ends early", ErrInvalid)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, fieldErr(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks that the configuration is usable: a name, a known
// firmware, positive CPUs and memory, known device types, disks that
// name a controller of the list.
func (c *Config) Validate() error {
	if c.Version != Version {
		return fieldErr("version", "is %d; this cairn reads version %d", c.Version, Version)
	}
	if strings.TrimSpace(c.Name) == "" {
		return fieldErr("name", "is empty")
	}
	if c.Firmware != FirmwareBIOS && c.Firmware != FirmwareEFI {
		return fieldErr("firmware", "is %q; want %q or %q", c.Firmware, FirmwareBIOS, FirmwareEFI)
	}
	if c.SecureBoot && c.Firmware != FirmwareEFI {
		return fieldErr("secure_boot", "is true but firmware is %q (secure boot needs efi)", c.Firmware)
	}
	if c.CPUs <= 0 {
		return fieldErr("cpus", "is %d; want at least 1", c.CPUs)
	}
	if c.CoresPerSocket < 0 || (c.CoresPerSocket > 0 && c.CPUs%c.CoresPerSocket != 0) {
		return fieldErr("cores_per_socket", "is %d; want a divisor of cpus (%d)", c.CoresPerSocket, c.CPUs)
	}
	if c.MemoryMB <= 0 {
		return fieldErr("memory_mb", "is %d; want at least 1", c.MemoryMB)
	}
	ctrls := map[int32]Controller{}
	for i, ct := range c.Controllers {
		f := fmt.Sprintf("controllers[%d]", i)
		if !slices.Contains(controllerTypes, ct.Type) {
			return fieldErr(f+".type", "is %q; want one of %s", ct.Type, strings.Join(controllerTypes, ", "))
		}
		if ct.Bus < 0 {
			return fieldErr(f+".bus", "is %d; want 0 or more", ct.Bus)
		}
		if _, dup := ctrls[ct.Key]; dup {
			return fieldErr(f+".key", "%d is used twice", ct.Key)
		}
		ctrls[ct.Key] = ct
	}
	names := map[string]bool{}
	for i, d := range c.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		if d.Name == "" {
			return fieldErr(f+".name", "is empty")
		}
		if names[d.Name] {
			return fieldErr(f+".name", "%q is used twice", d.Name)
		}
		names[d.Name] = true
		ct, ok := ctrls[d.ControllerKey]
		if !ok {
			return fieldErr(f+".controller_key", "%d names no controller of the list", d.ControllerKey)
		}
		if d.ControllerType != "" && d.ControllerType != ct.Type {
			return fieldErr(f+".controller_type", "is %q but controller %d is %q", d.ControllerType, d.ControllerKey, ct.Type)
		}
		if d.Unit < 0 {
			return fieldErr(f+".unit", "is %d; want 0 or more", d.Unit)
		}
		if d.Capacity <= 0 {
			return fieldErr(f+".capacity", "is %d; want the size in bytes", d.Capacity)
		}
		if !slices.Contains(provisioningKinds, d.Provisioning) {
			return fieldErr(f+".provisioning", "is %q; want one of %s", d.Provisioning, strings.Join(provisioningKinds, ", "))
		}
	}
	for i, n := range c.NICs {
		f := fmt.Sprintf("nics[%d]", i)
		if !slices.Contains(nicTypes, n.AdapterType) {
			return fieldErr(f+".adapter_type", "is %q; want one of %s", n.AdapterType, strings.Join(nicTypes, ", "))
		}
		if n.MAC != "" && !macRE.MatchString(n.MAC) {
			return fieldErr(f+".mac", "%q is not a MAC address (aa:bb:cc:dd:ee:ff)", n.MAC)
		}
	}
	for k := range c.ExtraConfig {
		if SecretKey(k) {
			return fieldErr("extra_config."+k, "looks like a secret (see SecretKey); remove it")
		}
	}
	return nil
}

// Controller returns the controller with the given key.
func (c *Config) Controller(key int32) (Controller, bool) {
	for _, ct := range c.Controllers {
		if ct.Key == key {
			return ct, true
		}
	}
	return Controller{}, false
}

// Disk returns the disk of the given cairn name.
func (c *Config) Disk(name string) (Disk, bool) {
	for _, d := range c.Disks {
		if d.Name == name {
			return d, true
		}
	}
	return Disk{}, false
}

// Marshal renders the configuration as indented JSON ending in a newline.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// secretWords are the parts of a key that mark it as a secret.
var secretWords = []string{"password", "passwd", "pwd", "secret", "token", "credential", "apikey", "api_key", "api-key", "privatekey", "private_key", "private-key", "passphrase", "auth", "cert", "key"}

// SecretKey reports whether an extraConfig key is treated as a secret and
// left out of the recorded configuration. The rule: every guestinfo.*
// key (cloud-init and OVF properties put user data and passwords there),
// and any key whose lower-cased dotted, dashed or underscored words
// contain one of password, passwd, pwd, secret, token, credential,
// apikey, privatekey, passphrase, auth, cert or key (so
// "answer.msg.passwd", "vmx.sshPublicKey" and "vmware.tools.authToken" go,
// "disk.EnableUUID" and "svga.present" stay). Where the key itself is
// what identifies hardware (pciPassthru*, ethernet*.address) nothing is a
// secret.
func SecretKey(key string) bool {
	k := strings.ToLower(key)
	if strings.HasPrefix(k, "guestinfo.") || k == "guestinfo" {
		return true
	}
	for _, w := range secretWords {
		if w == "key" {
			// "key" only as a whole word or a suffix (sshPublicKey),
			// never as in "keyboard" or "monkey" prefixes of words.
			for _, part := range strings.FieldsFunc(k, func(r rune) bool { return r == '.' || r == '_' || r == '-' }) {
				if part == "key" || (strings.HasSuffix(part, "key") && len(part) > 3 && !strings.HasSuffix(part, "hotkey")) {
					return true
				}
			}
			continue
		}
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// FilterExtraConfig splits advanced settings into those kept and the
// sorted names of those dropped by SecretKey.
func FilterExtraConfig(in map[string]string) (kept map[string]string, dropped []string) {
	kept = map[string]string{}
	for k, v := range in {
		if SecretKey(k) {
			dropped = append(dropped, k)
			continue
		}
		kept[k] = v
	}
	slices.Sort(dropped)
	if len(kept) == 0 {
		kept = nil
	}
	return kept, dropped
}

// FilterVMX removes from a .vmx file the lines whose key SecretKey calls a
// secret (the same rule as for extraConfig) and returns the names of the
// keys removed. Every other byte is kept as it was.
func FilterVMX(vmx []byte) (kept []byte, dropped []string) {
	lines := bytes.SplitAfter(vmx, []byte("\n"))
	out := make([]byte, 0, len(vmx))
	for _, l := range lines {
		key, _, ok := bytes.Cut(l, []byte("="))
		k := string(bytes.TrimSpace(key))
		if ok && k != "" && !strings.HasPrefix(k, "#") && SecretKey(k) {
			dropped = append(dropped, k)
			continue
		}
		out = append(out, l...)
	}
	return out, dropped
}

package esxsim

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// writeVMFiles writes the VM's .vmx (rendered from its configuration, as
// ESXi keeps it) and a .nvram (an NVRAM image of the VM's firmware) in
// the VM's directory, over the empty files vcsim creates. The datastore's
// HTTP interface (/folder) serves them.
func (s *Sim) writeVMFiles(_ context.Context, st *vmState) error {
	var err error
	werr := s.withVM(st.ref, func(_ *simulator.Context, vm *simulator.VirtualMachine) {
		if err = s.writeVMX(vm); err != nil {
			return
		}
		err = s.writeNVRAM(vm)
	})
	if werr != nil {
		return werr
	}
	return err
}

// VMXPath and NVRAMPath are the local paths of a VM's .vmx and .nvram.
func (s *Sim) VMXPath(vmName string) (string, error) {
	s.mu.Lock()
	vm, err := s.vmLocked(vmName)
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	var p string
	err = s.withVM(vm.ref, func(_ *simulator.Context, v *simulator.VirtualMachine) {
		p, err = s.localDescriptor(v.Config.Files.VmPathName)
	})
	return p, err
}

// NVRAMPath is the local path of a VM's .nvram file.
func (s *Sim) NVRAMPath(vmName string) (string, error) {
	p, err := s.VMXPath(vmName)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(p, ".vmx") + ".nvram", nil
}

// writeVMX renders the VM's configuration as a .vmx file; the caller
// holds vcsim's lock on the VM.
func (s *Sim) writeVMX(vm *simulator.VirtualMachine) error {
	local, err := s.localDescriptor(vm.Config.Files.VmPathName)
	if err != nil {
		return err
	}
	if err := os.WriteFile(local, renderVMX(vm.Config), 0o644); err != nil {
		return fmt.Errorf("write .vmx: %w", err)
	}
	return nil
}

// writeNVRAM writes the firmware's NVRAM once (ESXi creates it at the
// first power-on and the firmware keeps it); the caller holds the lock.
func (s *Sim) writeNVRAM(vm *simulator.VirtualMachine) error {
	local, err := s.localDescriptor(vm.Config.Files.VmPathName)
	if err != nil {
		return err
	}
	local = strings.TrimSuffix(local, ".vmx") + ".nvram"
	if fi, err := os.Stat(local); err == nil && fi.Size() > 0 {
		return nil
	}
	if err := os.WriteFile(local, renderNVRAM(vm.Config), 0o644); err != nil {
		return fmt.Errorf("write .nvram: %w", err)
	}
	return nil
}

var scsiVirtualDev = map[string]string{"pvscsi": "pvscsi", "lsilogic": "lsilogic", "lsilogic-sas": "lsisas1068", "buslogic": "buslogic"}

// renderVMX writes a configuration in the .vmx format ESXi uses: one
// `key = "value"` line per setting, device lines by controller and unit.
func renderVMX(cfg *types.VirtualMachineConfigInfo) []byte {
	var lines [][2]string
	set := func(k, v string) { lines = append(lines, [2]string{k, v}) }
	hw := strings.TrimPrefix(cfg.Version, "vmx-")
	set(".encoding", "UTF-8")
	set("config.version", "8")
	set("virtualHW.version", strings.TrimLeft(hw, "0"))
	set("displayName", cfg.Name)
	set("guestOS", vmxGuestOS(cfg.GuestId))
	if cfg.Firmware == "efi" {
		set("firmware", "efi")
		if cfg.BootOptions != nil && cfg.BootOptions.EfiSecureBootEnabled != nil && *cfg.BootOptions.EfiSecureBootEnabled {
			set("uefi.secureBoot.enabled", "TRUE")
		}
	}
	set("numvcpus", fmt.Sprint(cfg.Hardware.NumCPU))
	if cfg.Hardware.NumCoresPerSocket > 0 {
		set("cpuid.coresPerSocket", fmt.Sprint(cfg.Hardware.NumCoresPerSocket))
	}
	set("memSize", fmt.Sprint(cfg.Hardware.MemoryMB))
	set("uuid.bios", vmxUUID(cfg.Uuid))
	set("vc.uuid", vmxUUID(cfg.InstanceUuid))
	set("nvram", path.Base(strings.TrimSuffix(vmxFileName(cfg), ".vmx")+".nvram"))
	if cfg.Annotation != "" {
		set("annotation", strings.NewReplacer("|", "|7C", "\n", "|0A", "\"", "|22").Replace(cfg.Annotation))
	}
	if cfg.ChangeTrackingEnabled != nil && *cfg.ChangeTrackingEnabled {
		set("ctkEnabled", "TRUE")
	}
	devices := object.VirtualDeviceList(cfg.Hardware.Device)
	ctrlName := map[int32]string{}
	for _, d := range devices {
		key := d.GetVirtualDevice().Key
		switch c := d.(type) {
		case types.BaseVirtualSCSIController:
			name := fmt.Sprintf("scsi%d", c.GetVirtualSCSIController().BusNumber)
			ctrlName[key] = name
			set(name+".present", "TRUE")
			kind := map[string]string{"*types.ParaVirtualSCSIController": "pvscsi", "*types.VirtualLsiLogicController": "lsilogic", "*types.VirtualLsiLogicSASController": "lsilogic-sas", "*types.VirtualBusLogicController": "buslogic"}[fmt.Sprintf("%T", d)]
			set(name+".virtualDev", scsiVirtualDev[kind])
		case types.BaseVirtualSATAController:
			name := fmt.Sprintf("sata%d", c.GetVirtualSATAController().BusNumber)
			ctrlName[key] = name
			set(name+".present", "TRUE")
		case *types.VirtualNVMEController:
			name := fmt.Sprintf("nvme%d", c.BusNumber)
			ctrlName[key] = name
			set(name+".present", "TRUE")
		case *types.VirtualIDEController:
			ctrlName[key] = fmt.Sprintf("ide%d", c.BusNumber)
		}
	}
	nic := 0
	for _, d := range devices {
		vd := d.GetVirtualDevice()
		unit := int32(0)
		if vd.UnitNumber != nil {
			unit = *vd.UnitNumber
		}
		slot := fmt.Sprintf("%s:%d", ctrlName[vd.ControllerKey], unit)
		switch x := d.(type) {
		case *types.VirtualDisk:
			set(slot+".present", "TRUE")
			if b, ok := x.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
				var p object.DatastorePath
				p.FromString(b.FileName)
				set(slot+".fileName", path.Base(p.Path))
				if cfg.ChangeTrackingEnabled != nil && *cfg.ChangeTrackingEnabled {
					set(slot+".ctkEnabled", "TRUE")
				}
			}
			set(slot+".deviceType", "scsi-hardDisk")
			if strings.HasPrefix(slot, "sata") || strings.HasPrefix(slot, "nvme") {
				lines = lines[:len(lines)-1]
			}
		case types.BaseVirtualEthernetCard:
			e := x.GetVirtualEthernetCard()
			name := fmt.Sprintf("ethernet%d", nic)
			nic++
			set(name+".present", "TRUE")
			set(name+".virtualDev", vmxNICType(d))
			if b, ok := e.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok {
				set(name+".networkName", b.DeviceName)
			}
			set(name+".addressType", "generated")
			set(name+".generatedAddress", e.MacAddress)
		case *types.VirtualCdrom:
			set(slot+".present", "TRUE")
			set(slot+".deviceType", "atapi-cdrom")
			set(slot+".startConnected", "FALSE")
		}
	}
	var extra [][2]string
	for _, o := range cfg.ExtraConfig {
		ov := o.GetOptionValue()
		if ov.Key == "govcsim" || ov.Key == "nvram" {
			continue
		}
		extra = append(extra, [2]string{ov.Key, fmt.Sprint(ov.Value)})
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i][0] < extra[j][0] })
	lines = append(lines, extra...)
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s = \"%s\"\n", l[0], l[1])
	}
	return []byte(b.String())
}

func vmxFileName(cfg *types.VirtualMachineConfigInfo) string {
	var p object.DatastorePath
	p.FromString(cfg.Files.VmPathName)
	return path.Base(p.Path)
}

func vmxNICType(d types.BaseVirtualDevice) string {
	switch d.(type) {
	case *types.VirtualVmxnet3:
		return "vmxnet3"
	case *types.VirtualE1000e:
		return "e1000e"
	}
	return "e1000"
}

// vmxGuestOS maps a guest id to the .vmx spelling ("otherLinux64Guest" -> "other-linux-64").
func vmxGuestOS(id string) string {
	known := map[string]string{"otherLinux64Guest": "other4xlinux-64", "debian12_64Guest": "debian12-64", "windows2019srv_64Guest": "windows2019srv-64", "otherGuest64": "other-64"}
	if v, ok := known[id]; ok {
		return v
	}
	return strings.TrimSuffix(strings.ToLower(id), "guest")
}

// vmxUUID writes "4213a1b2-..." as the .vmx does: "42 13 a1 b2 ... c3-d4 ...".
func vmxUUID(u string) string {
	h := strings.ReplaceAll(strings.ToLower(u), "-", "")
	if len(h) != 32 {
		return u
	}
	var parts []string
	for i := 0; i < 32; i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts[:8], " ") + "-" + strings.Join(parts[8:], " ")
}

// renderNVRAM makes an NVRAM image like ESXi's: the "MRVN" container with
// a CMOS section for BIOS VMs (8,684 bytes), and for EFI VMs a flash
// variable store holding the boot variables (BootOrder, Boot0000 naming
// the first disk), erased flash (0xFF) elsewhere. Its content is a
// function of the VM's name and firmware, so tests can predict it.
func renderNVRAM(cfg *types.VirtualMachineConfigInfo) []byte {
	h := fnv.New64a()
	h.Write([]byte(cfg.Name))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0x6e7672616d))
	size := 8684
	if cfg.Firmware == "efi" {
		size = 270840
	}
	out := make([]byte, size)
	for i := range out {
		out[i] = 0xff
	}
	copy(out, "MRVN")
	binary.LittleEndian.PutUint32(out[4:], 1)
	if cfg.Firmware != "efi" {
		copy(out[16:], "CMOS")
		for i := 32; i < 32+128; i++ {
			out[i] = byte(rng.UintN(256))
		}
		return out
	}
	copy(out[16:], "EFI_")
	off := 64
	for _, v := range []struct{ name, data string }{
		{"BootOrder", "\x00\x00"},
		{"Boot0000", "EFI VMware Virtual Disk (0.0)"},
		{"Timeout", "\x00\x00"},
		{"PlatformLang", "en-US"},
	} {
		name := utf16.Encode([]rune(v.name))
		binary.LittleEndian.PutUint16(out[off:], 0x55aa)
		binary.LittleEndian.PutUint32(out[off+4:], uint32(len(name)*2))
		binary.LittleEndian.PutUint32(out[off+8:], uint32(len(v.data)))
		off += 12
		for _, c := range name {
			binary.LittleEndian.PutUint16(out[off:], c)
			off += 2
		}
		off += copy(out[off:], v.data)
		off = (off + 3) &^ 3
	}
	for i := off; i < off+256; i++ {
		out[i] = byte(rng.UintN(256))
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func scsiController(kind string) types.BaseVirtualDevice {
	base := types.VirtualSCSIController{
		SharedBus:         types.VirtualSCSISharingNoSharing,
		VirtualController: types.VirtualController{BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: keySCSIController}},
	}
	switch kind {
	case "lsilogic":
		return &types.VirtualLsiLogicController{VirtualSCSIController: base}
	case "lsilogic-sas":
		return &types.VirtualLsiLogicSASController{VirtualSCSIController: base}
	case "buslogic":
		return &types.VirtualBusLogicController{VirtualSCSIController: base}
	}
	return &types.ParaVirtualSCSIController{VirtualSCSIController: base}
}

func nicDevice(n NICSpec, key int32) types.BaseVirtualDevice {
	card := types.VirtualEthernetCard{
		VirtualDevice: types.VirtualDevice{
			Key:         key,
			Backing:     &types.VirtualEthernetCardNetworkBackingInfo{VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: n.Network}},
			Connectable: &types.VirtualDeviceConnectInfo{StartConnected: true, AllowGuestControl: true, Connected: true},
		},
		AddressType: string(types.VirtualEthernetCardMacTypeGenerated),
	}
	switch n.Type {
	case "e1000":
		return &types.VirtualE1000{VirtualEthernetCard: card}
	case "e1000e":
		return &types.VirtualE1000e{VirtualEthernetCard: card}
	}
	return &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: card}}
}

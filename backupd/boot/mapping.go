package boot

import (
	"slices"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// The device mapping a boot uses, exported for the other places that turn
// a recorded vSphere VM into a KVM machine (backupd/kvmrestore): one
// mapping, so that a restored domain and a boot check see the same
// machine.

// QEMUController is the qemu device that stands in for a vSphere
// controller type: "pvscsi", "lsi53c895a" (LSI Logic, LSI Logic SAS,
// BusLogic), "ahci", "nvme", or "ide" (q35's ICH9 AHCI ports).
func QEMUController(typ string) string { return qemuController(typ) }

// QEMUNIC is the qemu network device that stands in for a vSphere adapter
// type: "vmxnet3" (every vmxnet), "e1000e", else "e1000".
func QEMUNIC(adapterType string) string {
	switch adapterType {
	case "vmxnet3", "vmxnet2", "vmxnet":
		return "vmxnet3"
	case "e1000e":
		return "e1000e"
	}
	return "e1000"
}

// OVMFFiles are the UEFI firmware code and the variables template a boot
// uses (the Debian ovmf package's 4 MiB builds; with secure the
// secure-boot code and the template with Microsoft's keys enrolled).
func OVMFFiles(secure bool) (code, varsTemplate string) {
	if secure {
		return ovmfCodeSecure, ovmfVarsSecure
	}
	return ovmfCode, ovmfVars
}

// BootOrder sorts disk names into the order a boot gives them: the
// configuration's controller key, then unit (the first disk is what
// vSphere boots); disks the configuration does not name come last, in
// the order given. cfg may be nil (the order given).
func BootOrder(cfg *vmconfig.Config, names []string) []string {
	type slot struct {
		name string
		conf vmconfig.Disk
		ok   bool
	}
	slots := make([]slot, len(names))
	for i, n := range names {
		slots[i].name = n
		if cfg != nil {
			slots[i].conf, slots[i].ok = cfg.Disk(n)
		}
	}
	slices.SortStableFunc(slots, func(a, b slot) int { return compareBoot(a.conf, a.ok, b.conf, b.ok) })
	out := make([]string, len(slots))
	for i, s := range slots {
		out[i] = s.name
	}
	return out
}

// compareBoot orders two disks for booting (see BootOrder); ok says the
// configuration names the disk.
func compareBoot(a vmconfig.Disk, aok bool, b vmconfig.Disk, bok bool) int {
	switch {
	case aok != bok:
		if aok {
			return -1
		}
		return 1
	case !aok:
		return 0
	}
	if a.ControllerKey != b.ControllerKey {
		return int(a.ControllerKey - b.ControllerKey)
	}
	return int(a.Unit - b.Unit)
}

package backupd

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// SkippedDisk is a disk of the VM that a point holds no data of: left out
// because vSphere snapshots do not include it (independent disks,
// physical-mode RDMs) or because the job excludes it. The point records
// it (PointMeta.SkippedDisks, and vm/config.json marks the disk
// not_backed_up) so that a restore recreates it empty.
type SkippedDisk struct {
	Name     string `json:"name"`
	Label    string `json:"label,omitempty"`
	Capacity int64  `json:"capacity"`
	Mode     string `json:"mode,omitempty"`
	RDM      string `json:"rdm,omitempty"`
	// Kind is vsphere.SkipIndependent, vsphere.SkipRDMPhysical or
	// vsphere.SkipExcluded.
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// DiskExclusion is one --exclude-disk / exclude_disks pattern: DISK or
// VM/DISK. VM is a glob (path.Match) on the VM's name ("" for every VM);
// DISK is a disk's name in points ("scsi0-1", a glob like "scsi0-*"),
// its vSphere device position ("scsi0:1") or its label ("Hard disk 2",
// without regard to case).
type DiskExclusion struct {
	VM   string
	Disk string
	spec string
}

// String is the pattern as given.
func (e DiskExclusion) String() string { return e.spec }

var devicePosRE = regexp.MustCompile(`^(scsi|sata|nvme|ide)(\d+):(\d+)$`)

// ParseDiskExclusions checks --exclude-disk / exclude_disks patterns.
func ParseDiskExclusions(specs []string) ([]DiskExclusion, error) {
	var out []DiskExclusion
	for _, s := range specs {
		e := DiskExclusion{spec: s, Disk: strings.TrimSpace(s)}
		if i := strings.LastIndex(e.Disk, "/"); i >= 0 {
			e.VM, e.Disk = strings.TrimSpace(e.Disk[:i]), strings.TrimSpace(e.Disk[i+1:])
			if e.VM == "" {
				return nil, fmt.Errorf("disk exclusion %q: empty VM name before the /: use DISK or VM/DISK (scsi0:1, web-*/scsi0-2, \"db/Hard disk 3\")", s)
			}
			if _, err := path.Match(e.VM, ""); err != nil {
				return nil, fmt.Errorf("disk exclusion %q: bad VM pattern %q: %v", s, e.VM, err)
			}
		}
		if e.Disk == "" {
			return nil, fmt.Errorf("disk exclusion %q: no disk: use DISK or VM/DISK (scsi0:1, web-*/scsi0-2, \"db/Hard disk 3\")", s)
		}
		if m := devicePosRE.FindStringSubmatch(e.Disk); m != nil {
			e.Disk = m[1] + m[2] + "-" + m[3]
		}
		if _, err := path.Match(e.Disk, ""); err != nil {
			return nil, fmt.Errorf("disk exclusion %q: bad disk pattern %q: %v", s, e.Disk, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Matches reports whether the pattern names disk d of VM vm.
func (e DiskExclusion) Matches(vm string, d vsphere.Disk) bool {
	if e.VM != "" {
		if ok, _ := path.Match(e.VM, vm); !ok {
			return false
		}
	}
	if ok, _ := path.Match(e.Disk, d.Name); ok {
		return true
	}
	return d.Label != "" && strings.EqualFold(e.Disk, d.Label)
}

// classifyDisks splits a snapshot's disks into those to read and those a
// point leaves out, with a warning for each disk left out that the job
// did not exclude on purpose.
func classifyDisks(vm string, disks []vsphere.Disk, excl []DiskExclusion) (keep []vsphere.Disk, skipped []SkippedDisk, warnings []string) {
	for _, d := range disks {
		sd := SkippedDisk{Name: d.Name, Label: d.Label, Capacity: d.Capacity, Mode: d.Mode, RDM: d.RDM}
		for _, e := range excl {
			if e.Matches(vm, d) {
				sd.Kind, sd.Reason = vsphere.SkipExcluded, fmt.Sprintf("excluded by the job (pattern %q)", e.spec)
				break
			}
		}
		if sd.Kind == "" {
			switch sd.Kind = d.SkipKind(); sd.Kind {
			case vsphere.SkipIndependent:
				sd.Reason = fmt.Sprintf("independent disk (mode %s): vSphere snapshots leave independent disks out, so no consistent copy can be read; "+
					"make the disk dependent (persistent) to back it up, or exclude it (--exclude-disk, exclude_disks:) to acknowledge", d.Mode)
			case vsphere.SkipRDMPhysical:
				sd.Reason = fmt.Sprintf("raw device mapping in physical compatibility mode (LUN %s): vSphere snapshots leave it out; "+
					"protect the LUN on the storage array or from inside the guest, switch the RDM to virtual compatibility mode, or exclude it to acknowledge", orNone(d.RDMDevice))
			}
		}
		if sd.Kind == "" {
			keep = append(keep, d)
			continue
		}
		skipped = append(skipped, sd)
		if sd.Kind != vsphere.SkipExcluded {
			warnings = append(warnings, fmt.Sprintf("disk %s (%s) not backed up: %s", d.Name, orNone(d.Label), sd.Reason))
		}
	}
	return keep, skipped, warnings
}

func orNone(s string) string {
	if s == "" {
		return "unnamed"
	}
	return s
}

// markSkipped marks the disks a point left out in the VM configuration
// kept with it, so that a restore knows to create them empty.
func markSkipped(cfg *vmconfig.Config, skipped []SkippedDisk) {
	for _, sd := range skipped {
		for i := range cfg.Disks {
			if cfg.Disks[i].Name == sd.Name {
				cfg.Disks[i].NotBackedUp = sd.Kind
			}
		}
	}
}

// skippedSummary names the disks left out, for an error when none is left.
func skippedSummary(skipped []SkippedDisk) string {
	var parts []string
	for _, s := range skipped {
		parts = append(parts, fmt.Sprintf("%s: %s", s.Name, s.Kind))
	}
	return strings.Join(parts, ", ")
}

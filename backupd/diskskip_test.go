package backupd

import (
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// TestDiskExclusions: the pattern forms (name, device position, glob,
// label, VM/DISK) select the disks they name and only those, bad
// patterns are refused naming the fix, and classifyDisks tells excluded,
// independent and physical-RDM disks apart (warnings only for the disks
// left out without being excluded).
func TestDiskExclusions(t *testing.T) {
	disks := []vsphere.Disk{
		{Name: "scsi0-0", Label: "Hard disk 1"},
		{Name: "scsi0-1", Label: "Hard disk 2"},
		{Name: "scsi0-2", Label: "Hard disk 3", Mode: "independent_nonpersistent"},
		{Name: "sata0-0", Label: "Hard disk 4", RDM: "physicalMode", Mode: "independent_persistent"},
		{Name: "nvme0-0", Label: "Hard disk 5", RDM: "virtualMode", Mode: "persistent"},
	}
	for _, tc := range []struct {
		patterns []string
		vm       string
		excluded []string
	}{
		{nil, "web", nil},
		{[]string{"scsi0:1"}, "web", []string{"scsi0-1"}},
		{[]string{"scsi0-1"}, "web", []string{"scsi0-1"}},
		{[]string{"hard disk 1"}, "web", []string{"scsi0-0"}},
		{[]string{"scsi0-*"}, "web", []string{"scsi0-0", "scsi0-1", "scsi0-2"}},
		{[]string{"web-*/scsi0:1"}, "web-2", []string{"scsi0-1"}},
		{[]string{"web-*/scsi0:1"}, "db", nil},
		{[]string{"db/Hard disk 5", "web/nvme0:0"}, "db", []string{"nvme0-0"}},
	} {
		excl, err := ParseDiskExclusions(tc.patterns)
		if err != nil {
			t.Fatalf("%q: %v", tc.patterns, err)
		}
		keep, skipped, warns := classifyDisks(tc.vm, disks, excl)
		var got []string
		kinds := map[string]string{}
		for _, s := range skipped {
			kinds[s.Name] = s.Kind
			if s.Kind == vsphere.SkipExcluded {
				got = append(got, s.Name)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.excluded, ",") {
			t.Errorf("%q on VM %s excluded %v, want %v", tc.patterns, tc.vm, got, tc.excluded)
		}
		if len(keep)+len(skipped) != len(disks) {
			t.Errorf("%q: %d kept + %d skipped of %d", tc.patterns, len(keep), len(skipped), len(disks))
		}
		for name, kind := range map[string]string{"scsi0-2": vsphere.SkipIndependent, "sata0-0": vsphere.SkipRDMPhysical} {
			if kinds[name] != kind && kinds[name] != vsphere.SkipExcluded {
				t.Errorf("%q: disk %s kind %q, want %q", tc.patterns, name, kinds[name], kind)
			}
		}
		nwarn := 0
		for _, s := range skipped {
			if s.Kind != vsphere.SkipExcluded {
				nwarn++
			}
		}
		if len(warns) != nwarn {
			t.Errorf("%q: %d warnings for %d disks left out unasked: %q", tc.patterns, len(warns), nwarn, warns)
		}
	}
	for _, bad := range []string{"", "/scsi0:1", "web/", "[/scsi0-1", "scsi0-["} {
		if _, err := ParseDiskExclusions([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("pattern %q: %v, want an error naming it", bad, err)
		}
	}
}

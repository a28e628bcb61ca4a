package main

import (
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestVolumeAdvice: `files`/`restore-file --disk D --part N` on an MD
// member, an LVM physical volume or an LDM partition says which --volume
// reads it (the library's text names only the mount's fs/md/ paths).
func TestVolumeAdvice(t *testing.T) {
	for typ, want := range map[string]string{
		partinfo.TypeMDMember: "--volume md/ARRAY",
		"lvm2":                "--volume lvm/VG/LV",
		partinfo.TypeLDM:      "--volume ldm/VOLUME",
	} {
		got := volumeAdvice(typ, "centos")
		if !strings.Contains(got, want) || !strings.Contains(got, "cairn partitions --vm centos") {
			t.Errorf("%s: %q lacks %q", typ, got, want)
		}
	}
	if got := volumeAdvice("ext4", "centos"); got != "" {
		t.Errorf("ext4: %q", got)
	}
}

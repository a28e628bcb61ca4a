package vmdkdesc

import (
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

func TestDescriptor(t *testing.T) {
	p := blockmap.Point{VM: "web01", ID: "2026-11-23T01-00-00Z", Gen: 3}
	d := blockmap.DiskInfo{Name: "disk0", Size: 10<<30 + 1000}
	common := []string{
		"# Disk DescriptorFile\n",
		"# cairn: VM web01, recovery point 2026-11-23T01-00-00Z, disk disk0\n",
		"version=1\n",
		"parentCID=ffffffff\n",
		"ddb.geometry.heads = \"255\"\n",
		"ddb.geometry.sectors = \"63\"\n",
		"ddb.geometry.cylinders = \"1305\"\n",
		"ddb.adapterType = \"lsilogic\"\n",
	}
	for _, tc := range []struct {
		style  Style
		extent string
		want   []string
	}{
		{MonolithicFlat, "disk0.img", []string{"createType=\"monolithicFlat\"\n", "RW 20971522 FLAT \"disk0.img\" 0\n"}},
		{VMFS, "disk0-flat.vmdk", []string{"createType=\"vmfs\"\n", "RW 20971522 VMFS \"disk0-flat.vmdk\"\n"}},
	} {
		desc := string(Descriptor(p, d, tc.style, tc.extent, "cairn"))
		for _, want := range append(tc.want, common...) {
			if !strings.Contains(desc, want) {
				t.Errorf("style %d: descriptor lacks %q:\n%s", tc.style, want, desc)
			}
		}
		if again := string(Descriptor(p, d, tc.style, tc.extent, "cairn")); again != desc {
			t.Errorf("style %d: descriptor is not deterministic", tc.style)
		}
	}
	if CID(p, d) == CID(blockmap.Point{VM: "web01", ID: "x", Gen: 4}, d) {
		t.Error("two points share a CID")
	}
	if CID(p, d) == CID(p, blockmap.DiskInfo{Name: "disk1", Size: d.Size}) {
		t.Error("two disks share a CID")
	}
	tiny := string(Descriptor(p, blockmap.DiskInfo{Name: "d", Size: 4096}, MonolithicFlat, "d.img", "cairn"))
	if !strings.Contains(tiny, "ddb.geometry.cylinders = \"1\"\n") || !strings.Contains(tiny, "RW 8 FLAT") {
		t.Errorf("tiny disk descriptor:\n%s", tiny)
	}
	evil := string(Descriptor(blockmap.Point{VM: "a\nRW 1 FLAT \"x\" 0", ID: "p"}, d, MonolithicFlat, "disk0.img", "cairn"))
	if strings.Count(evil, "\nRW ") != 1 {
		t.Errorf("a line break in the VM name made an extent line:\n%s", evil)
	}
	for name, ok := range map[string]bool{"disk0": true, "my disk": true, `a"b`: false, "a\nb": false} {
		if SafeName(name) != ok {
			t.Errorf("SafeName(%q) = %v", name, !ok)
		}
	}
}

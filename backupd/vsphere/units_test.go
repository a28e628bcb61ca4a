package vsphere

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

func TestNormalizeThumbprint(t *testing.T) {
	raw := strings.Repeat("ab", 32)
	got, err := NormalizeThumbprint(raw)
	if err != nil || got != strings.TrimSuffix(strings.Repeat("AB:", 32), ":") {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{"", "AB:CD", strings.Repeat("zz", 32)} {
		if _, err := NormalizeThumbprint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFlatExtentFromDescriptor(t *testing.T) {
	dir := t.TempDir()
	desc := filepath.Join(dir, "vm.vmdk")
	os.WriteFile(desc, []byte("# Disk DescriptorFile\nversion=1\ncreateType=\"vmfs\"\n\n# Extent description\nRW 2048 VMFS \"vm-flat.vmdk\"\n"), 0o644)
	got, err := flatExtent(desc)
	if err != nil || got != filepath.Join(dir, "vm-flat.vmdk") {
		t.Fatalf("%q %v", got, err)
	}
	raw := filepath.Join(dir, "raw.img")
	os.WriteFile(raw, make([]byte, 4096), 0o644)
	if got, err := flatExtent(raw); err != nil || got != raw {
		t.Errorf("raw file: %q %v", got, err)
	}
	os.WriteFile(desc, []byte("createType=\"monolithicSparse\"\nRW 2048 SPARSE \"vm.vmdk\"\n"), 0o644)
	if _, err := flatExtent(desc); !errors.Is(err, ErrNotFlat) {
		t.Errorf("sparse extent: %v", err)
	}
	// the backup snapshot's disk of a VM with snapshots of its own: a delta
	os.WriteFile(desc, []byte("createType=\"seSparse\"\nparentFileNameHint=\"vm-000001.vmdk\"\nRW 2048 SESPARSE \"vm-000002-sesparse.vmdk\"\n"), 0o644)
	if _, err := flatExtent(desc); !errors.Is(err, ErrNotFlat) || !strings.Contains(err.Error(), "snapshots of its own") || !strings.Contains(err.Error(), "nbd or hotadd") {
		t.Errorf("delta extent: %v", err)
	}
	dirs := DatastoreDirs{"ds1": dir}
	os.WriteFile(desc, []byte("createType=\"vmfs\"\nRW 2048 VMFS \"vm-flat.vmdk\"\n"), 0o644)
	if got, err := dirs.LocalPath("[ds1] vm.vmdk"); err != nil || got != filepath.Join(dir, "vm-flat.vmdk") {
		t.Errorf("LocalPath: %q %v", got, err)
	}
	for _, bad := range []string{"[ds2] vm.vmdk", "[ds1] ../etc/passwd", "no brackets"} {
		if _, err := dirs.LocalPath(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDisksOfNamesByControllerAndUnit(t *testing.T) {
	unit := func(n int32) *int32 { return &n }
	disk := func(key, ctrl int32, u int32, file string) *types.VirtualDisk {
		return &types.VirtualDisk{CapacityInBytes: 1 << 20, VirtualDevice: types.VirtualDevice{Key: key, ControllerKey: ctrl, UnitNumber: unit(u),
			Backing: &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file}, Uuid: "u", ChangeId: "c/1"}}}
	}
	devs := object.VirtualDeviceList{
		&types.ParaVirtualSCSIController{VirtualSCSIController: types.VirtualSCSIController{VirtualController: types.VirtualController{BusNumber: 1, VirtualDevice: types.VirtualDevice{Key: 1001}}}},
		&types.VirtualAHCIController{VirtualSATAController: types.VirtualSATAController{VirtualController: types.VirtualController{BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: 15000}}}},
		&types.VirtualNVMEController{VirtualController: types.VirtualController{BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: 31000}}},
		disk(2016, 1001, 3, "[ds] a.vmdk"), disk(16001, 15000, 1, "[ds] b.vmdk"), disk(32000, 31000, 0, "[ds] c.vmdk"),
	}
	var names []string
	for _, d := range DisksOf(devs) {
		names = append(names, d.Name)
		if d.ChangeID != "c/1" || d.UUID != "u" || d.Capacity != 1<<20 {
			t.Errorf("disk %+v", d)
		}
	}
	if strings.Join(names, ",") != "nvme0-0,sata0-1,scsi1-3" {
		t.Errorf("names %v", names)
	}
}

func TestDSFolder(t *testing.T) {
	for in, want := range map[string]string{"[ds] vm1/vm1.vmx": "[ds] vm1", "[ds] vm1/vm1-000001.vmdk": "[ds] vm1", "[ds]": "[ds] "} {
		if got := dsFolder(in); got != want {
			t.Errorf("dsFolder(%q) = %q, want %q", in, got, want)
		}
	}
}

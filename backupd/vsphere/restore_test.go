package vsphere_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestCreateVMFromConfig records a VM's configuration, creates a new VM
// from it (network mapped, provisioning kept) and compares the new VM's
// recorded configuration: devices, firmware, CPUs, memory, new identity.
// Its disks are real flat files of the right sizes; the thick one owns
// its blocks. A second VM of the same name is refused; destroy removes
// the files.
func TestCreateVMFromConfig(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{DVPortgroups: 1, VMs: []esxsim.VMSpec{{
		Name: "src", Firmware: "efi", SecureBoot: true, NumCPUs: 4, CoresPerSocket: 2, MemoryMB: 2048,
		SCSIController: "lsilogic", CDROM: true, Annotation: "the web server",
		NICs: []esxsim.NICSpec{{Type: "e1000e"}, {Type: "vmxnet3"}},
		Disks: []esxsim.DiskSpec{
			{Size: 8 << 20}, {Size: 4 << 20, Provisioning: "thick"}, {Size: 2 << 20, Controller: esxsim.ControllerSATA},
		},
	}}})
	ctx := context.Background()
	c := connect(t, sim)
	src, err := c.FindVM(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	cfg := vsphere.VMConfig(src.Name, src.Config)
	created, err := c.CreateVM(ctx, vsphere.CreateSpec{
		Config: &cfg, Name: "copy", Networks: map[string]string{"VM Network": "DC0_DVPG0"}, JobID: "job1",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := vsphere.VMConfig(created.Name, created.Config)
	if got.Firmware != "efi" || !got.SecureBoot || got.CPUs != 4 || got.CoresPerSocket != 2 || got.MemoryMB != 2048 || got.GuestID != cfg.GuestID {
		t.Errorf("new VM: firmware %s secure %v cpus %d/%d memory %d guest %s", got.Firmware, got.SecureBoot, got.CPUs, got.CoresPerSocket, got.MemoryMB, got.GuestID)
	}
	if got.BIOSUUID == cfg.BIOSUUID || got.BIOSUUID == "" {
		t.Errorf("BIOS UUID %q: want a new one (source %q)", got.BIOSUUID, cfg.BIOSUUID)
	}
	if len(got.Controllers) < 2 || len(got.Disks) != 3 || len(got.NICs) != 2 || len(got.CDROMs) != 1 {
		t.Fatalf("new VM devices: %+v", got)
	}
	hasCtrl := map[string]bool{}
	for _, ct := range got.Controllers {
		hasCtrl[ct.Type] = true
	}
	if !hasCtrl[vmconfig.ControllerLSILogic] || !hasCtrl[vmconfig.ControllerAHCI] {
		t.Errorf("controllers %+v", got.Controllers)
	}
	for i, d := range got.Disks {
		w := cfg.Disks[i]
		if d.Name != w.Name || d.Capacity != w.Capacity || d.Provisioning != w.Provisioning {
			t.Errorf("disk %d: %s %d %s, want %s %d %s", i, d.Name, d.Capacity, d.Provisioning, w.Name, w.Capacity, w.Provisioning)
		}
	}
	for i, n := range got.NICs {
		if n.AdapterType != cfg.NICs[i].AdapterType || n.MAC == cfg.NICs[i].MAC || !n.Connected {
			t.Errorf("NIC %d: %+v, source %+v", i, n, cfg.NICs[i])
		}
		if !strings.HasPrefix(n.Network, "dvportgroup:") {
			t.Errorf("NIC %d on %q, want the mapped DC0_DVPG0", i, n.Network)
		}
	}
	paths, err := sim.DiskLocalPaths("copy")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cfg.Disks {
		st, err := os.Stat(paths[d.Name])
		if err != nil || st.Size() != d.Capacity {
			t.Fatalf("disk %s file %s: %v %v", d.Name, paths[d.Name], st, err)
		}
		allocated := st.Sys().(*syscall.Stat_t).Blocks * 512
		if thick := d.Provisioning != vmconfig.ProvisioningThin; thick != (allocated >= d.Capacity) {
			t.Errorf("disk %s (%s): %d bytes allocated of %d", d.Name, d.Provisioning, allocated, d.Capacity)
		}
	}
	same, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, Name: "same", KeepIdentity: true, Provisioning: "thin"})
	if err != nil {
		t.Fatal(err)
	}
	sc := vsphere.VMConfig(same.Name, same.Config)
	if sc.BIOSUUID != cfg.BIOSUUID || sc.NICs[0].MAC != cfg.NICs[0].MAC || sc.NICs[1].MAC != cfg.NICs[1].MAC {
		t.Errorf("--keep-identity: uuid %s macs %s %s, want %s %s %s", sc.BIOSUUID, sc.NICs[0].MAC, sc.NICs[1].MAC, cfg.BIOSUUID, cfg.NICs[0].MAC, cfg.NICs[1].MAC)
	}
	for _, d := range sc.Disks {
		if d.Provisioning != vmconfig.ProvisioningThin {
			t.Errorf("disk %s of a thin restore is %s", d.Name, d.Provisioning)
		}
	}
	if err := c.DestroyVM(ctx, same.Ref); err != nil {
		t.Fatal(err)
	}
	inc, err := c.IncompleteRestores(ctx)
	if err != nil || len(inc) != 1 || inc[0].Name != "copy" || inc[0].Job != "job1" || inc[0].PID != os.Getpid() {
		t.Fatalf("incomplete restores %+v %v", inc, err)
	}
	if err := c.FinishRestore(ctx, created.Ref, cfg.Annotation); err != nil {
		t.Fatal(err)
	}
	if inc, _ := c.IncompleteRestores(ctx); len(inc) != 0 {
		t.Fatalf("after FinishRestore: %+v", inc)
	}
	if _, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, Name: "copy"}); !errors.Is(err, vsphere.ErrVMExists) {
		t.Fatalf("second VM of the same name: %v", err)
	}
	if err := c.DestroyVM(ctx, created.Ref); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after destroy: %v", p, err)
		}
	}
	if _, err := c.LookupVM(ctx, "copy"); !errors.Is(err, vsphere.ErrVMNotFound) {
		t.Errorf("lookup after destroy: %v", err)
	}
}

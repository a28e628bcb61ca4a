package esxsim_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

func TestInventoryHasRealFlatDisks(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{NumVMs: 2, DisksPerVM: 2, DiskSize: 64 << 20})
	ctx := context.Background()
	if sim.URL.Scheme != "https" || sim.URL.Host == "" || sim.URL.Path != "/sdk" || !strings.HasPrefix(sim.URL.Host, "127.0.0.1:") {
		t.Fatalf("URL = %s, want https://127.0.0.1:PORT/sdk", sim.URL)
	}
	if parts := strings.Split(sim.Thumbprint, ":"); len(parts) != 32 {
		t.Fatalf("thumbprint %q is not 32 colon-separated bytes", sim.Thumbprint)
	}
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	vms, err := finder.VirtualMachineList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != 2 {
		t.Fatalf("found %d VMs, want 2", len(vms))
	}
	vm := vmObject(t, sim, c, "vm1")
	var mvm mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config", "runtime"}, &mvm); err != nil {
		t.Fatal(err)
	}
	if mvm.Config.Version != "vmx-19" {
		t.Errorf("hardware version %q, want vmx-19", mvm.Config.Version)
	}
	if mvm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("power state %s, want poweredOn", mvm.Runtime.PowerState)
	}
	infos, err := sim.Disks("vm1")
	if err != nil {
		t.Fatal(err)
	}
	disks := vmDisks(t, vm)
	if len(disks) != 2 || len(infos) != 2 {
		t.Fatalf("%d disks in config, %d in back door, want 2", len(disks), len(infos))
	}
	wantNames := []string{"[datastore1] vm1/vm1.vmdk", "[datastore1] vm1/vm1_1.vmdk"}
	for i, d := range disks {
		b := flatBacking(t, d)
		if b.FileName != wantNames[i] {
			t.Errorf("disk %d fileName %q, want %q", i, b.FileName, wantNames[i])
		}
		if d.ControllerKey != 1000 || d.UnitNumber == nil || *d.UnitNumber != int32(i) {
			t.Errorf("disk %d on controller %d unit %v, want scsi0:%d", i, d.ControllerKey, d.UnitNumber, i)
		}
		if b.Uuid == "" || b.Uuid != infos[i].UUID {
			t.Errorf("disk %d uuid %q, back door says %q", i, b.Uuid, infos[i].UUID)
		}
		if d.Key != infos[i].Key {
			t.Errorf("disk %d key %d, back door says %d", i, d.Key, infos[i].Key)
		}
		st, err := os.Stat(infos[i].LocalPath)
		if err != nil {
			t.Fatalf("flat file: %v", err)
		}
		if st.Size() != d.CapacityInBytes || d.CapacityInBytes != 64<<20 {
			t.Errorf("disk %d: file %d bytes, capacity %d, want both %d", i, st.Size(), d.CapacityInBytes, 64<<20)
		}
		path, err := sim.LocalPath(b.FileName)
		if err != nil || path != infos[i].LocalPath {
			t.Errorf("LocalPath(%q) = %q, %v; want %q", b.FileName, path, err, infos[i].LocalPath)
		}
		desc, err := os.ReadFile(infos[i].DescriptorPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(desc), `VMFS "vm1`) || !strings.Contains(string(desc), "ddb.uuid") {
			t.Errorf("descriptor does not name its flat extent and uuid:\n%s", desc)
		}
	}
}

func TestWrongPasswordIsRejected(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{User: "backup", Password: "s3cret"})
	ctx := context.Background()
	_, err := esxsimtest.Login(ctx, sim, "backup", "wrong")
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if name := faultName(err); name != "InvalidLogin" {
		t.Errorf("wrong password gave %v (%s), want InvalidLogin", err, name)
	}
	if _, err := esxsimtest.Login(ctx, sim, "other", "s3cret"); err == nil {
		t.Fatal("login with a wrong user succeeded")
	}
	c, err := esxsimtest.Login(ctx, sim, "backup", "s3cret")
	if err != nil {
		t.Fatalf("login with the right password: %v", err)
	}
	_ = c.Logout(ctx)
}

func TestControllersForNaming(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{VMs: []esxsim.VMSpec{{
		Name: "mixed",
		Disks: []esxsim.DiskSpec{
			{Controller: esxsim.ControllerSCSI}, {Controller: esxsim.ControllerSATA},
			{Controller: esxsim.ControllerNVMe}, {Controller: esxsim.ControllerNVMe},
		},
	}}})
	vm := vmObject(t, sim, c, "mixed")
	devices, err := vm.Device(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		ctrl := devices.FindByKey(d.GetVirtualDevice().ControllerKey)
		names = append(names, devices.Type(ctrl)+":"+string(rune('0'+*d.GetVirtualDevice().UnitNumber)))
	}
	want := "pvscsi:0 ahci:0 nvme:0 nvme:1"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("disks on %q, want %q", got, want)
	}
}

func TestBusyListenAddressIsAnError(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{})
	_, err := esxsim.Start(context.Background(), esxsim.Options{ListenAddr: sim.URL.Host, DatastoreDir: t.TempDir()})
	if err == nil {
		t.Fatal("a second simulator on the same port started")
	}
}

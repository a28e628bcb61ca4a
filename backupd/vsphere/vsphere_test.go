package vsphere_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

func connect(t *testing.T, sim *esxsim.Sim) *vsphere.Conn {
	t.Helper()
	c, err := vsphere.Connect(context.Background(), vsphere.ConnectOptions{
		URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: sim.Password}, Thumbprint: sim.Thumbprint,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestSnapshotChangedAreasAndLocalPath(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{MaxChangedAreas: 3, VMs: []esxsim.VMSpec{{
		Name: "web", Disks: []esxsim.DiskSpec{{Size: 16 << 20}, {Size: 8 << 20, Controller: esxsim.ControllerNVMe}},
	}}})
	ctx := context.Background()
	c := connect(t, sim)
	vm, err := c.FindVM(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(vm.Disks) != 2 || vm.Disks[0].Name != "nvme0-0" || vm.Disks[1].Name != "scsi0-0" {
		t.Fatalf("disks %+v", vm.Disks)
	}
	if changed, err := vm.EnableCBT(ctx); err != nil || !changed {
		t.Fatalf("enable CBT: %v %v", changed, err)
	}
	// ESXi applies the setting at the next stun: a snapshot was taken and
	// removed again.
	took, removed := map[string]bool{}, map[string]bool{} // snapshot morefs (the journal has one entry per disk)
	for _, e := range sim.Journal() {
		if e.VM == "web" && e.Op == esxsim.OpSnapshot {
			took[e.Snapshot] = true
		}
		if e.VM == "web" && e.Op == esxsim.OpRemoveSnapshot {
			removed[e.Snapshot] = true
		}
	}
	if len(took) != 1 || len(removed) != 1 {
		t.Errorf("enabling CBT took snapshots %v and removed %v, want one create/remove cycle", took, removed)
	}
	if changed, err := vm.EnableCBT(ctx); err != nil || changed {
		t.Errorf("enabling CBT again: changed %v, %v; want no change", changed, err)
	}
	g, _ := sim.Guest("web")
	rng := rand.New(rand.NewPCG(1, 2))
	written, err := g.WriteRandomBlocks(0, 10, esxsim.BlockSize, rng)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := vm.CreateSnapshot(ctx, "cairn-test", vsphere.QuiesceAuto)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Consistency != vsphere.ConsistencyQuiesced {
		t.Errorf("consistency %s", snap.Consistency)
	}
	d, _ := snap.Disk(vm.Disks[1].Key)
	areas, err := vm.ChangedAreas(ctx, snap.Ref, d, "*")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, a := range areas {
		total += a.Length
	}
	if total != int64(len(written))*esxsim.BlockSize {
		t.Errorf("changed areas cover %d bytes, want %d (%v)", total, len(written)*esxsim.BlockSize, areas)
	}
	dirs, err := c.LocalDatastores(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	local, err := dirs.LocalPath(d.FileName)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sim.LocalPath(d.FileName)
	if filepath.Clean(local) != filepath.Clean(want) {
		t.Errorf("local path %s, want %s", local, want)
	}
	if _, err := vm.ChangedAreas(ctx, snap.Ref, d, vsphere.ChangeIDEpoch(d.ChangeID)+"/99999"); err == nil {
		t.Error("a future changeId was accepted")
	}
	if err := vm.RemoveSnapshot(snap.Ref); err != nil {
		t.Fatal(err)
	}
}

func TestFindVMErrors(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{NumVMs: 1})
	c := connect(t, sim)
	_, err := c.FindVM(context.Background(), "nope")
	if !errors.Is(err, vsphere.ErrVMNotFound) {
		t.Fatalf("err %v", err)
	}
	ref, _ := sim.VMRef("vm1")
	vm, err := c.FindVM(context.Background(), ref.Value)
	if err != nil || vm.Name != "vm1" {
		t.Fatalf("by moref: %v", err)
	}
	vm, err = c.FindVM(context.Background(), "/DC0/vm/vm1")
	if err != nil || vm.Name != "vm1" {
		t.Fatalf("by path: %v", err)
	}
}

func TestConnectErrors(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{NumVMs: 1})
	ctx := context.Background()
	_, err := vsphere.Connect(ctx, vsphere.ConnectOptions{URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: "wrong"}, Thumbprint: sim.Thumbprint})
	if err == nil || !strings.Contains(err.Error(), "wrong user name or password") || strings.Contains(err.Error(), "wrong\"") {
		t.Errorf("wrong password: %v", err)
	}
	bad := strings.Repeat("AB:", 31) + "AB"
	_, err = vsphere.Connect(ctx, vsphere.ConnectOptions{URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: sim.Password}, Thumbprint: bad})
	if err == nil || !strings.Contains(err.Error(), sim.Thumbprint) {
		t.Errorf("wrong thumbprint: %v", err)
	}
	_, err = vsphere.Connect(ctx, vsphere.ConnectOptions{URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: sim.Password}})
	var untrusted *vsphere.UntrustedCertError
	if !errors.As(err, &untrusted) || untrusted.Thumbprint != sim.Thumbprint || !strings.Contains(err.Error(), sim.Thumbprint) {
		t.Errorf("untrusted: %v", err)
	}
}

func TestLoadCredentials(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cred")
	if err := os.WriteFile(f, []byte("admin\ns3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := vsphere.LoadCredentials(f); err == nil || !strings.Contains(err.Error(), "0644") {
		t.Errorf("mode 0644 accepted: %v", err)
	}
	os.Chmod(f, 0o600)
	c, err := vsphere.LoadCredentials(f)
	if err != nil || c.User != "admin" || c.Password != "s3cret" {
		t.Fatalf("%v %v", c, err)
	}
	if strings.Contains(c.String(), "s3cret") {
		t.Error("String shows the password")
	}
}

func TestFindVMRefusesTemplate(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "golden", PoweredOff: true, Disks: []esxsim.DiskSpec{{}}}}})
	c := connect(t, sim)
	ctx := context.Background()
	vm, err := c.FindVM(ctx, "golden")
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Object().MarkAsTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FindVM(ctx, "golden"); err == nil || !strings.Contains(err.Error(), "template") {
		t.Errorf("template: %v", err)
	}
}

func TestQuiesceRequireAndAuto(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "q", FailQuiesce: true, Disks: []esxsim.DiskSpec{{}}}}})
	c := connect(t, sim)
	ctx := context.Background()
	vm, err := c.FindVM(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.CreateSnapshot(ctx, "cairn-r", vsphere.QuiesceRequire); err == nil {
		t.Fatal("require succeeded despite a quiesce fault")
	}
	s, err := vm.CreateSnapshot(ctx, "cairn-a", vsphere.QuiesceAuto)
	if err != nil || s.Consistency != vsphere.ConsistencyCrash || s.QuiesceError == "" {
		t.Fatalf("auto: %+v %v", s, err)
	}
	removed, err := vm.RemoveStaleSnapshots(ctx)
	if err != nil || len(removed) != 1 {
		t.Fatalf("stale removal: %v %v", removed, err)
	}
}

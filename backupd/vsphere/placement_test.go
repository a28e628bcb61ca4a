package vsphere_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi/simulator"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// placedVM is a VM in a sub-folder and a resource pool of the second
// host, with its second disk on a second datastore.
var placedVM = esxsim.VMSpec{
	Name: "web", Folder: "prod/web", Host: 1, ResourcePool: "webpool",
	Disks: []esxsim.DiskSpec{{Size: 4 << 20}, {Size: 2 << 20, Datastore: "ds2"}},
}

// recordPlacement reads the VM's configuration with its placement, as a
// backup records them.
func recordPlacement(t *testing.T, c *vsphere.Conn, name string) vmconfig.Config {
	t.Helper()
	ctx := context.Background()
	vm, err := c.FindVM(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vsphere.VMConfig(vm.Name, vm.Config)
	if cfg.Placement, err = c.VMPlacement(ctx, vm); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestVMPlacementRecorded: the folder, resource pool, host, datacenter and
// each disk's datastore of a VM are what the inventory says.
func TestVMPlacementRecorded(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{Hosts: 2, ExtraDatastores: []string{"ds2"}, VMs: []esxsim.VMSpec{placedVM}})
	c := connect(t, sim)
	cfg := recordPlacement(t, c, "web")
	want := vmconfig.Placement{
		Datacenter: "DC0", Folder: "/DC0/vm/prod/web", ResourcePool: "/DC0/host/DC0_H1/Resources/webpool",
		Host: "DC0_H1", Datastore: esxsim.DefaultDatastore,
	}
	if *cfg.Placement != want {
		t.Errorf("placement %+v\nwant      %+v", *cfg.Placement, want)
	}
	if len(cfg.Disks) != 2 || cfg.Disks[0].Datastore != esxsim.DefaultDatastore || cfg.Disks[1].Datastore != "ds2" {
		t.Errorf("disk datastores: %+v", cfg.Disks)
	}
	// Round trip through the document a point stores.
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := vmconfig.Parse(data)
	if err != nil || *back.Placement != want || back.Disks[1].Datastore != "ds2" {
		t.Fatalf("parsed back: %+v %v", back, err)
	}
}

// placedOf is where a VM created by CreateVM is, read back as a backup
// would record it.
func placedOf(t *testing.T, c *vsphere.Conn, created *vsphere.CreatedVM) vmconfig.Config {
	t.Helper()
	return recordPlacement(t, c, created.Name)
}

// TestCreateVMOriginalPlacement: a VM created from a configuration with a
// recorded placement goes back to its folder, resource pool, host and
// per-disk datastores; each flag overrides its part only; a configuration
// without placement goes where it always went.
func TestCreateVMOriginalPlacement(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{Hosts: 2, ExtraDatastores: []string{"ds2"}, VMs: []esxsim.VMSpec{placedVM}})
	ctx := context.Background()
	c := connect(t, sim)
	cfg := recordPlacement(t, c, "web")
	orig, err := c.FindVM(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DestroyVM(ctx, orig.Ref); err != nil {
		t.Fatal(err)
	}
	dir, _ := sim.DatastoreDirOf("ds2")
	if _, err := os.Stat(filepath.Join(dir, "web")); !os.IsNotExist(err) {
		t.Fatalf("the destroyed VM's directory on ds2: %v", err)
	}

	// No flags: where it was.
	created, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, JobID: "j1"})
	if err != nil {
		t.Fatal(err)
	}
	got := placedOf(t, c, created)
	if *got.Placement != *cfg.Placement {
		t.Errorf("restored to %+v\nwant        %+v", *got.Placement, *cfg.Placement)
	}
	for i, d := range got.Disks {
		if d.Datastore != cfg.Disks[i].Datastore {
			t.Errorf("disk %s on %s, want %s", d.Name, d.Datastore, cfg.Disks[i].Datastore)
		}
	}
	pl := created.Placed
	if !pl.Original || len(pl.Fallbacks) != 0 || pl.Folder != "/DC0/vm/prod/web" || pl.Host != "DC0_H1" ||
		pl.ResourcePool != "/DC0/host/DC0_H1/Resources/webpool" || pl.Disks["scsi0-1"] != "ds2" || pl.Disks["scsi0-0"] != esxsim.DefaultDatastore {
		t.Errorf("placed %+v", pl)
	}
	// The second disk's file is a real file on ds2's directory.
	if _, err := os.Stat(filepath.Join(dir, "web", "web_1-flat.vmdk")); err != nil {
		t.Errorf("disk on ds2: %v", err)
	}

	// Flags win, each for its part: --host and --datastore move the
	// compute and storage, the folder stays the recorded one.
	flagged, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, Name: "web-flags", Host: "DC0_H0", Datastore: esxsim.DefaultDatastore, JobID: "j2"})
	if err != nil {
		t.Fatal(err)
	}
	fg := placedOf(t, c, flagged)
	if fg.Placement.Host != "DC0_H0" || fg.Placement.ResourcePool != "/DC0/host/DC0_H0/Resources" || fg.Placement.Folder != "/DC0/vm/prod/web" {
		t.Errorf("with --host: %+v", *fg.Placement)
	}
	for _, d := range fg.Disks {
		if d.Datastore != esxsim.DefaultDatastore {
			t.Errorf("with --datastore: disk %s on %s", d.Name, d.Datastore)
		}
	}
	foldered, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, Name: "web-folder", Folder: "/DC0/vm", JobID: "j3"})
	if err != nil {
		t.Fatal(err)
	}
	if ff := placedOf(t, c, foldered); ff.Placement.Folder != "/DC0/vm" || ff.Placement.ResourcePool != cfg.Placement.ResourcePool || ff.Disks[1].Datastore != "ds2" {
		t.Errorf("with --folder: %+v disks %+v", *ff.Placement, ff.Disks)
	}

	// Without a recorded placement (an imported point): the default.
	plain := cfg
	plain.Placement = nil
	def, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &plain, Name: "web-plain", JobID: "j4"})
	if err != nil {
		t.Fatal(err)
	}
	dp := placedOf(t, c, def)
	if dp.Placement.Folder != "/DC0/vm" || dp.Placement.Host != "DC0_H0" || dp.Placement.ResourcePool != "/DC0/host/DC0_H0/Resources" {
		t.Errorf("without recorded placement: %+v", *dp.Placement)
	}
	for _, d := range dp.Disks {
		if d.Datastore != esxsim.DefaultDatastore {
			t.Errorf("without recorded placement: disk %s on %s", d.Name, d.Datastore)
		}
	}
	if def.Placed.Original || len(def.Placed.Fallbacks) != 0 {
		t.Errorf("placed %+v", def.Placed)
	}

	// --resource-pool (a path below the host folder) picks the pool and
	// its host; a --host outside it, an unknown pool and a pool with a
	// cluster are placement errors naming the field.
	inPool, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &plain, Name: "web-pool", ResourcePool: "DC0_H1/Resources/webpool", JobID: "j5"})
	if err != nil {
		t.Fatal(err)
	}
	if pp := placedOf(t, c, inPool); pp.Placement.ResourcePool != cfg.Placement.ResourcePool || pp.Placement.Host != "DC0_H1" {
		t.Errorf("--resource-pool: %+v", *pp.Placement)
	}
	for _, tc := range []struct {
		spec  vsphere.CreateSpec
		field string
	}{
		{vsphere.CreateSpec{ResourcePool: "DC0_H1/Resources/webpool", Host: "DC0_H0"}, "host"},
		{vsphere.CreateSpec{ResourcePool: "DC0_H1/Resources/nopool"}, "resource_pool"},
		{vsphere.CreateSpec{ResourcePool: "DC0_H1/Resources/webpool", Cluster: "DC0_C0"}, "resource_pool"},
	} {
		tc.spec.Config, tc.spec.Name = &plain, "web-bad"
		_, err := c.CreateVM(ctx, tc.spec)
		var pe *vsphere.PlacementError
		if !errors.As(err, &pe) || pe.Field != tc.field {
			t.Errorf("%+v: %v, want a placement error on %s", tc.spec, err, tc.field)
		}
	}
}

// TestCreateVMPlacementFallback: in a vCenter without the second datastore
// only that disk falls back (one line saying so); a missing folder and
// resource pool fall back each with their own line.
func TestCreateVMPlacementFallback(t *testing.T) {
	src := esxsimtest.Start(t, esxsim.Options{Hosts: 2, ExtraDatastores: []string{"ds2"}, VMs: []esxsim.VMSpec{placedVM}})
	cfg := recordPlacement(t, connect(t, src), "web")
	// The target has the folder and the pool (another VM lives there) but
	// no ds2.
	dst := esxsimtest.Start(t, esxsim.Options{Hosts: 2, VMs: []esxsim.VMSpec{{
		Name: "neighbour", Folder: "prod/web", Host: 1, ResourcePool: "webpool", Disks: []esxsim.DiskSpec{{Size: 1 << 20}},
	}}})
	ctx := context.Background()
	c := connect(t, dst)
	created, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, JobID: "j1"})
	if err != nil {
		t.Fatal(err)
	}
	got := placedOf(t, c, created)
	if got.Placement.Folder != cfg.Placement.Folder || got.Placement.ResourcePool != cfg.Placement.ResourcePool || got.Placement.Host != "DC0_H1" {
		t.Errorf("placed %+v, want %+v", *got.Placement, *cfg.Placement)
	}
	if got.Disks[0].Datastore != esxsim.DefaultDatastore || got.Disks[1].Datastore != esxsim.DefaultDatastore {
		t.Errorf("disks %+v", got.Disks)
	}
	fb := created.Placed.Fallbacks
	if len(fb) != 1 || !strings.Contains(fb[0], "scsi0-1") || !strings.Contains(fb[0], "ds2") || !strings.Contains(fb[0], esxsim.DefaultDatastore) {
		t.Errorf("fallbacks %q: want one line about disk scsi0-1 on ds2", fb)
	}

	// Folder and pool gone too: each says so, the VM goes to the defaults.
	gone := cfg
	pl := *cfg.Placement
	pl.Folder, pl.ResourcePool = "/DC0/vm/retired", "/DC0/host/DC0_H1/Resources/oldpool"
	gone.Placement = &pl
	g, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &gone, Name: "web2", JobID: "j2"})
	if err != nil {
		t.Fatal(err)
	}
	gp := placedOf(t, c, g)
	if gp.Placement.Folder != "/DC0/vm" || gp.Placement.ResourcePool != "/DC0/host/DC0_H1/Resources" || gp.Placement.Host != "DC0_H1" {
		t.Errorf("placed %+v", *gp.Placement)
	}
	fb = g.Placed.Fallbacks
	has := func(words ...string) bool {
		return slices.ContainsFunc(fb, func(l string) bool {
			for _, w := range words {
				if !strings.Contains(l, w) {
					return false
				}
			}
			return true
		})
	}
	if len(fb) != 3 || !has("folder", "/DC0/vm/retired", "/DC0/vm") || !has("resource pool", "oldpool", "DC0_H1") || !has("scsi0-1", "ds2") {
		t.Errorf("fallbacks %q", fb)
	}
}

// TestPlacementInCluster uses vcsim's own model, which has a cluster
// (DC0_C0, three hosts, a child resource pool DC0_C0_RP1 its VMs run in): a VM of a cluster records
// the cluster; it comes back to its pool and host; with its pool gone it
// goes to the cluster's root pool on its host, saying so; --cluster keeps
// the recorded pool of that cluster. Its NIC on a distributed port group
// comes back on that port group.
func TestPlacementInCluster(t *testing.T) {
	m := simulator.VPX()
	m.Pool = 1
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Remove)
	srv := m.Service.NewServer()
	t.Cleanup(srv.Close)
	ctx := context.Background()
	c, err := vsphere.Connect(ctx, vsphere.ConnectOptions{
		URL: srv.URL.String(), Credentials: vsphere.Credentials{User: "user", Password: "pass"}, Insecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cfg := recordPlacement(t, c, "DC0_C0_RP1_VM0")
	if cfg.Placement.Cluster != "DC0_C0" || !strings.HasPrefix(cfg.Placement.ResourcePool, "/DC0/host/DC0_C0/Resources") ||
		!strings.HasPrefix(cfg.Placement.Host, "DC0_C0_H") || cfg.Placement.Folder != "/DC0/vm" {
		t.Fatalf("recorded %+v", *cfg.Placement)
	}
	if cfg.Placement.ResourcePool != "/DC0/host/DC0_C0/Resources/DC0_C0_RP1" {
		t.Fatalf("recorded pool %s", cfg.Placement.ResourcePool)
	}
	// vcsim picks a VM's host at random: say it ran on the third.
	pl := *cfg.Placement
	pl.Host = "DC0_C0_H2"
	cfg.Placement = &pl
	created, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, Name: "back", JobID: "j1"})
	if err != nil {
		t.Fatal(err)
	}
	got := placedOf(t, c, created)
	if *got.Placement != pl || len(created.Placed.Fallbacks) != 0 {
		t.Errorf("restored to %+v (fallbacks %q)\nwant        %+v", *got.Placement, created.Placed.Fallbacks, pl)
	}
	// Its NIC is back on the distributed port group it was on (recorded
	// as "dvportgroup:KEY").
	if len(got.NICs) != len(cfg.NICs) || len(cfg.NICs) == 0 || !strings.HasPrefix(cfg.NICs[0].Network, "dvportgroup:") || got.NICs[0].Network != cfg.NICs[0].Network {
		t.Errorf("NICs %+v, recorded %+v", got.NICs, cfg.NICs)
	}
	// --cluster of the recorded pool keeps the pool and host.
	cl, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, Name: "incluster", Cluster: "DC0_C0", JobID: "j2"})
	if err != nil {
		t.Fatal(err)
	}
	if got := placedOf(t, c, cl); got.Placement.ResourcePool != pl.ResourcePool || got.Placement.Host != pl.Host {
		t.Errorf("--cluster DC0_C0: %+v", *got.Placement)
	}
	// The pool is gone: the cluster's root pool, the recorded host.
	gone := pl
	gone.ResourcePool = "/DC0/host/DC0_C0/Resources/retired"
	cfg.Placement = &gone
	g, err := c.CreateVM(ctx, vsphere.CreateSpec{Config: &cfg, Name: "nopool", JobID: "j3"})
	if err != nil {
		t.Fatal(err)
	}
	gp := placedOf(t, c, g)
	if gp.Placement.ResourcePool != "/DC0/host/DC0_C0/Resources" || gp.Placement.Host != "DC0_C0_H2" || gp.Placement.Cluster != "DC0_C0" {
		t.Errorf("pool gone: %+v", *gp.Placement)
	}
	if fb := g.Placed.Fallbacks; len(fb) != 1 || !strings.Contains(fb[0], "retired") || !strings.Contains(fb[0], "cluster DC0_C0") {
		t.Errorf("fallbacks %q", fb)
	}
}

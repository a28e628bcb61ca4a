package test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// placedWeb lives in a sub-folder and a resource pool of the second host,
// its second disk on a second datastore.
func placedWeb() esxsim.VMSpec {
	return esxsim.VMSpec{
		Name: "web", Folder: "prod/web", Host: 1, ResourcePool: "webpool", ChangeTracking: true,
		NICs:  []esxsim.NICSpec{{}},
		Disks: []esxsim.DiskSpec{{Size: 8 << 20}, {Size: 4 << 20, Datastore: "ds2"}},
	}
}

// whereIs reads a VM's placement as a backup records it.
func whereIs(t *testing.T, conn *vsphere.Conn, name string) (vmconfig.Placement, []vmconfig.Disk) {
	t.Helper()
	ctx := context.Background()
	vm, err := conn.FindVM(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := conn.VMPlacement(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	return *pl, vsphere.VMConfig(vm.Name, vm.Config).Disks
}

// TestRestoreOriginalPlacement backs up a VM that lives in a sub-folder, a
// resource pool of the second host and on two datastores, deletes it and
// restores the point: without placement flags it comes back to the same
// folder, pool, host and per-disk datastores (nfc; nbd for a copy beside
// it); --datastore
// puts every disk there; in a vCenter without the second datastore only
// that disk falls back, and the CLI says so on one line; a configuration
// without a recorded placement (an imported point's) goes to the default
// place as before.
func TestRestoreOriginalPlacement(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim := esxsimtest.Start(t, esxsim.Options{Hosts: 2, ExtraDatastores: []string{"ds2"}, VMs: []esxsim.VMSpec{placedWeb()}})
	conn := connectSim(t, sim)
	ctx := context.Background()
	repo := newTestRepo(t)
	scribble(t, sim, "web", rand.New(rand.NewPCG(3, 4)))
	if _, err := backupd.BackupVM(ctx, repo, conn, "web", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		t.Fatal(err)
	}
	p, err := repo.ResolvePoint(ctx, "web", "latest")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := backupd.PointVMConfig(ctx, repo, p)
	if err != nil {
		t.Fatal(err)
	}
	orig, origDisks := whereIs(t, conn, "web")
	if cfg.Placement == nil || *cfg.Placement != orig || orig.Folder != "/DC0/vm/prod/web" || orig.Host != "DC0_H1" ||
		orig.ResourcePool != "/DC0/host/DC0_H1/Resources/webpool" || orig.Datacenter != "DC0" {
		t.Fatalf("point records placement %+v, the VM is at %+v", cfg.Placement, orig)
	}
	if cfg.Disks[0].Datastore != esxsim.DefaultDatastore || cfg.Disks[1].Datastore != "ds2" {
		t.Fatalf("point records disk datastores %+v", cfg.Disks)
	}
	ref, err := conn.LookupVM(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.DestroyVM(ctx, ref); err != nil {
		t.Fatal(err)
	}
	checkDisks := func(name string) {
		t.Helper()
		files, err := sim.DiskLocalPaths(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Disks {
			sameAsPoint(t, repo, p, d.Name, files[d.Name])
		}
	}

	// No flags, nfc: back where it was, under its own name.
	opts := restoreOpts(sim)
	opts.Transports = []string{backupd.WriteTransportNFC}
	res, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, VCenter: sim.URL.Host}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.VM != "web" || res.Placement == nil || !res.Placement.Original || len(res.Placement.Fallbacks) != 0 {
		t.Fatalf("restore result %+v placement %+v", res, res.Placement)
	}
	back, backDisks := whereIs(t, conn, "web")
	if back != orig {
		t.Errorf("restored to %+v\nwant the original %+v", back, orig)
	}
	for i, d := range backDisks {
		if d.Datastore != origDisks[i].Datastore || d.FileName != origDisks[i].FileName {
			t.Errorf("disk %s restored as %s, the original was %s", d.Name, d.FileName, origDisks[i].FileName)
		}
	}
	checkDisks("web")
	ds2, _ := sim.DatastoreDirOf("ds2")
	if _, err := os.Stat(filepath.Join(ds2, "web", "web_1-flat.vmdk")); err != nil {
		t.Errorf("second disk not on ds2: %v", err)
	}

	// The same through nbd, as a copy beside it: the copy's disks go to
	// the original's datastores too (the second written on ds2's file).
	opts.Transports = []string{backupd.WriteTransportNBD}
	res, err = backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{
		Point: p, Create: vsphere.CreateSpec{Name: "web-nbd"}, VCenter: sim.URL.Host,
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if pl, disks := whereIs(t, conn, "web-nbd"); pl != orig || disks[1].Datastore != "ds2" || res.Placement.Disks["scsi0-1"] != "ds2" {
		t.Errorf("nbd copy placed at %+v, disks %+v", pl, disks)
	}
	checkDisks("web-nbd")

	// A configuration without placement (what an imported point carries):
	// the default place, as before.
	plain := *cfg
	plain.Placement = nil
	res, err = backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{
		Point: p, Config: &plain, Create: vsphere.CreateSpec{Name: "web-imported"}, VCenter: sim.URL.Host,
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Placement == nil || res.Placement.Original || len(res.Placement.Fallbacks) != 0 {
		t.Errorf("imported: placement %+v", res.Placement)
	}
	if pl, disks := whereIs(t, conn, "web-imported"); pl.Folder != "/DC0/vm" || pl.Host != "DC0_H0" ||
		pl.ResourcePool != "/DC0/host/DC0_H0/Resources" || disks[1].Datastore != esxsim.DefaultDatastore {
		t.Errorf("imported: placed at %+v %+v", pl, disks)
	}
	checkDisks("web-imported")

	// The CLI, nbd, --datastore: every disk goes there, folder and pool
	// stay the original's; --json shows the placement.
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	base := func(s *esxsim.Sim, more ...string) []string {
		return append([]string{"--repo", repo.Dir(), "restore", "vm", "--vcenter", s.URL.String(), "--thumbprint", s.Thumbprint,
			"--vm", "web", "--transport", "nbd", "--nbd-command", restoreNBDCommand}, more...)
	}
	repo.Close()
	r := runCairn(t, env, base(sim, "--name", "web-one", "--datastore", esxsim.DefaultDatastore, "--json")...)
	if r.code != 0 {
		t.Fatalf("restore --datastore: %s", r.stderr)
	}
	var out struct {
		VM        string          `json:"vm"`
		Placement *vsphere.Placed `json:"placement"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Placement == nil {
		t.Fatalf("restore --json %q: %v", r.stdout, err)
	}
	if pl := out.Placement; !pl.Original || pl.Folder != orig.Folder || pl.ResourcePool != orig.ResourcePool || pl.Host != "DC0_H1" ||
		pl.Disks["scsi0-0"] != esxsim.DefaultDatastore || pl.Disks["scsi0-1"] != esxsim.DefaultDatastore || len(pl.Fallbacks) != 0 {
		t.Errorf("restore --datastore placement %+v", pl)
	}
	if _, disks := whereIs(t, conn, "web-one"); disks[1].Datastore != esxsim.DefaultDatastore {
		t.Errorf("with --datastore the second disk is on %s", disks[1].Datastore)
	}

	// --resource-pool names the pool; with --cluster it is refused before
	// connecting; an unknown one says which flag to fix.
	r = runCairn(t, env, base(sim, "--name", "web-pool", "--resource-pool", "DC0_H1/Resources/webpool", "--folder", "/DC0/vm")...)
	if r.code != 0 || !strings.Contains(r.stdout, "pool /DC0/host/DC0_H1/Resources/webpool\thost DC0_H1") {
		t.Errorf("restore --resource-pool: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = runCairn(t, env, base(sim, "--name", "web-pool2", "--resource-pool", "DC0_H1/Resources/webpool", "--cluster", "C1")...)
	if r.code == 0 || !strings.Contains(r.stderr, "--resource-pool and --cluster exclude each other") {
		t.Errorf("restore --resource-pool --cluster: exit %d %s", r.code, r.stderr)
	}
	r = runCairn(t, env, base(sim, "--name", "web-pool3", "--resource-pool", "nopool")...)
	if r.code == 0 || !strings.Contains(r.stderr, `resource_pool "nopool"`) || !strings.Contains(r.stderr, "give --resource-pool") {
		t.Errorf("restore --resource-pool nopool: exit %d %s", r.code, r.stderr)
	}

	// Another vCenter with the folder and the pool but no ds2: that disk
	// alone falls back, and the CLI says so on one line.
	dst := esxsimtest.Start(t, esxsim.Options{Hosts: 2, VMs: []esxsim.VMSpec{{
		Name: "neighbour", Folder: "prod/web", Host: 1, ResourcePool: "webpool", Disks: []esxsim.DiskSpec{{Size: 1 << 20}},
	}}})
	dconn := connectSim(t, dst)
	r = runCairn(t, env, base(dst)...)
	if r.code != 0 {
		t.Fatalf("restore to a vCenter without ds2: %s", r.stderr)
	}
	if !strings.Contains(r.stdout, "placed (original placement, 1 recorded item not found): folder /DC0/vm/prod/web") || !strings.Contains(r.stdout, "scsi0-1@"+esxsim.DefaultDatastore) {
		t.Errorf("restore output %q", r.stdout)
	}
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "ds2") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "scsi0-1") || !strings.Contains(lines[0], "it goes to "+esxsim.DefaultDatastore) {
		t.Errorf("fallback lines %q in %s", lines, r.stderr)
	}
	if pl, disks := whereIs(t, dconn, "web"); pl.Folder != orig.Folder || pl.ResourcePool != orig.ResourcePool ||
		disks[0].Datastore != esxsim.DefaultDatastore || disks[1].Datastore != esxsim.DefaultDatastore {
		t.Errorf("in the second vCenter: %+v %+v", pl, disks)
	}

}

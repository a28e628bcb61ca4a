package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// edgeEnv is a simulator with one VM "edge" whose disks are the spec's,
// written with random data, and a repository.
type edgeEnv struct {
	sim   *esxsim.Sim
	conn  *vsphere.Conn
	repo  *blockmap.Repo
	names []string
	rng   *rand.Rand
}

func newEdgeEnv(t *testing.T, disks []esxsim.DiskSpec, more ...esxsim.VMSpec) *edgeEnv {
	t.Helper()
	vms := append([]esxsim.VMSpec{{Name: "edge", ChangeTracking: true, Disks: disks}}, more...)
	sim := esxsimtest.Start(t, esxsim.Options{VMs: vms, ExtraDatastores: []string{"ds2"}})
	e := &edgeEnv{sim: sim, conn: connectSim(t, sim), repo: newTestRepo(t), rng: rand.New(rand.NewPCG(3, 4))}
	e.names = e.diskNames(t)
	e.write(t, 20)
	return e
}

// diskNames are cairn's names of the simulator's disks of "edge", in the
// simulator's order (matched by device key).
func (e *edgeEnv) diskNames(t *testing.T) []string {
	t.Helper()
	vm, err := e.conn.FindVM(context.Background(), "edge")
	if err != nil {
		t.Fatal(err)
	}
	disks, err := e.sim.Disks("edge")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sd := range disks {
		for _, d := range vm.Disks {
			if d.Key == sd.Key {
				out = append(out, d.Name)
			}
		}
	}
	if len(out) != len(disks) {
		t.Fatalf("disk names %v of %d disks", out, len(disks))
	}
	return out
}

// write changes n random blocks on every disk of "edge".
func (e *edgeEnv) write(t *testing.T, n int) {
	t.Helper()
	g, err := e.sim.Guest("edge")
	if err != nil {
		t.Fatal(err)
	}
	disks, err := e.sim.Disks("edge")
	if err != nil {
		t.Fatal(err)
	}
	for d := range disks {
		if _, err := g.WriteRandomBlocks(d, n, esxsim.BlockSize, e.rng); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *edgeEnv) backup(t *testing.T, opts backupd.JobOptions) *backupd.Result {
	t.Helper()
	if len(opts.Transports) == 0 {
		opts.Transports = []string{"file"}
	}
	res, err := backupd.BackupVM(context.Background(), e.repo, e.conn, "edge", opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return res
}

// pointMeta decodes the point's PointMeta.
func pointMeta(t *testing.T, p blockmap.Point) backupd.PointMeta {
	t.Helper()
	var pm backupd.PointMeta
	if err := json.Unmarshal(p.Meta, &pm); err != nil {
		t.Fatalf("point meta: %v", err)
	}
	return pm
}

func pointDiskNames(p blockmap.Point) []string {
	var out []string
	for _, d := range p.Disks {
		out = append(out, d.Name)
	}
	return out
}

func skippedKinds(s []backupd.SkippedDisk) map[string]string {
	out := map[string]string{}
	for _, d := range s {
		out[d.Name] = d.Kind
	}
	return out
}

// TestBackupIndependentAndRDMDisks backs up a VM with a normal disk, an
// independent-persistent disk, a physical-mode RDM and a virtual-mode
// RDM. ESXi leaves the independent disk and the physical RDM out of
// snapshots (esxsim does too: their snapshot backing is the live disk), so
// the point must hold the normal disk and the virtual RDM only, record the
// two others as skipped with a warning each (point meta, result, job
// record, vm/config not_backed_up), and a restore must recreate them
// empty with their size and mode, warning about each (nfc and nbd).
func TestBackupIndependentAndRDMDisks(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	e := newEdgeEnv(t, []esxsim.DiskSpec{
		{Size: 8 << 20},
		{Size: 4 << 20, Mode: string(types.VirtualDiskModeIndependent_persistent)},
		{Size: 4 << 20, RDM: esxsim.RDMPhysical, Mode: string(types.VirtualDiskModeIndependent_persistent)},
		{Size: 4 << 20, RDM: esxsim.RDMVirtual},
	})
	ctx := context.Background()
	res := e.backup(t, backupd.JobOptions{})
	want := []string{e.names[0], e.names[3]}
	if got := pointDiskNames(res.Point); !slices.Equal(got, want) {
		t.Fatalf("point disks %v, want %v (the independent disk and the physical RDM left out)", got, want)
	}
	images := runningImages(t, e.sim, "edge")
	checkPoint(t, e.repo, res.Point, want, [][]byte{images[0], images[3]})
	wantKinds := map[string]string{e.names[1]: vsphere.SkipIndependent, e.names[2]: vsphere.SkipRDMPhysical}
	pm := pointMeta(t, res.Point)
	for what, s := range map[string][]backupd.SkippedDisk{"result": res.Skipped, "point meta": pm.SkippedDisks} {
		if got := skippedKinds(s); len(got) != 2 || got[e.names[1]] != wantKinds[e.names[1]] || got[e.names[2]] != wantKinds[e.names[2]] {
			t.Errorf("%s skipped disks %+v, want %v", what, s, wantKinds)
		}
	}
	for what, w := range map[string][]string{"result": res.Warnings, "point meta": pm.Warnings} {
		if len(w) != 2 || !strings.Contains(w[0], e.names[1]) || !strings.Contains(w[0], "independent") ||
			!strings.Contains(w[1], e.names[2]) || !strings.Contains(w[1], "physical compatibility mode") {
			t.Errorf("%s warnings %q", what, w)
		}
	}
	jobs, err := backupd.NewJobLog(e.repo.Dir()).List()
	if err != nil {
		t.Fatal(err)
	}
	if last := jobs[len(jobs)-1]; last.State != backupd.JobOK || len(last.Warnings) != 2 {
		t.Errorf("job record %+v, want ok with 2 warnings", last)
	}
	cfg, err := backupd.PointVMConfig(ctx, e.repo, res.Point)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cfg.Disks {
		if d.NotBackedUp != wantKinds[d.Name] {
			t.Errorf("vm/config disk %s not_backed_up %q, want %q", d.Name, d.NotBackedUp, wantKinds[d.Name])
		}
	}
	if d, _ := cfg.Disk(e.names[2]); d.RDM != "physicalMode" || !strings.HasPrefix(d.RDMDevice, "/vmfs/devices/disks/naa.") {
		t.Errorf("vm/config RDM disk %+v", d)
	}
	// the virtual RDM is tracked like any disk: the next backup is incremental
	e.write(t, 3)
	res2 := e.backup(t, backupd.JobOptions{})
	for _, dr := range res2.Disks {
		if dr.Full {
			t.Errorf("second backup read disk %s whole: %s", dr.Name, dr.FullReason)
		}
	}
	images = runningImages(t, e.sim, "edge")
	checkPoint(t, e.repo, res2.Point, want, [][]byte{images[0], images[3]})

	// one disk to another VM: a disk left out is refused with the reason
	_, err = backupd.RestoreDisk(ctx, e.repo, backupd.NewVSphere(e.conn), backupd.RestoreDiskRequest{Point: res2.Point, Disk: e.names[1], TargetVM: "edge"}, restoreOpts(e.sim))
	if err == nil || !strings.Contains(err.Error(), "the backup left it out (independent disk") {
		t.Errorf("restore of the independent disk alone: %v", err)
	}
	for _, transport := range []string{backupd.WriteTransportNFC, backupd.WriteTransportNBD} {
		name := "edge-" + transport
		opts := restoreOpts(e.sim)
		opts.Transports = []string{transport}
		rr, err := backupd.Restore(ctx, e.repo, backupd.NewVSphere(e.conn), backupd.RestoreRequest{Point: res2.Point, Create: vsphere.CreateSpec{Name: name}}, opts)
		if err != nil {
			t.Fatalf("restore via %s of a point with disks left out: %v", transport, err)
		}
		if len(rr.Warnings) != 2 || !strings.Contains(rr.Warnings[0], "independent") || !strings.Contains(rr.Warnings[1], "map the LUN again") {
			t.Errorf("restore via %s warnings %q", transport, rr.Warnings)
		}
		vm, err := e.conn.FindVM(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(vm.Disks) != 4 {
			t.Fatalf("restored VM has %d disks, want 4", len(vm.Disks))
		}
		disks, err := e.sim.Disks(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range vm.Disks {
			if d.Capacity != 4<<20 && i > 0 {
				t.Errorf("restored disk %s capacity %d", d.Name, d.Capacity)
			}
			if i == 1 && d.Mode != string(types.VirtualDiskModeIndependent_persistent) {
				t.Errorf("restored independent disk %s has mode %q", d.Name, d.Mode)
			}
		}
		for _, i := range []int{1, 2} {
			b, err := os.ReadFile(disks[i].LocalPath)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != 4<<20 || !bytes.Equal(b, make([]byte, len(b))) {
				t.Errorf("restored disk %d of %s: %d bytes, not all zero", i, name, len(b))
			}
		}
		sameAsPoint(t, e.repo, res2.Point, e.names[0], disks[0].LocalPath)
		sameAsPoint(t, e.repo, res2.Point, e.names[3], disks[3].LocalPath)
	}
}

// TestBackupExcludeDisks excludes a disk by its device position for one
// backup, then includes it again: the excluded disk is recorded as
// excluded (no warning), the other disks are backed up; once included it
// is read in full ("first backup of this disk") while the others stay
// incremental, and every point equals the VM.
func TestBackupExcludeDisks(t *testing.T) {
	e := newEdgeEnv(t, []esxsim.DiskSpec{{Size: 8 << 20}, {Size: 4 << 20}, {Size: 4 << 20, Controller: esxsim.ControllerSATA}})
	ctx := context.Background()
	first := e.backup(t, backupd.JobOptions{})
	e.write(t, 5)
	excl, err := backupd.ParseDiskExclusions([]string{"edge/scsi0:1", "other-*/Hard disk 1"})
	if err != nil {
		t.Fatal(err)
	}
	res := e.backup(t, backupd.JobOptions{ExcludeDisks: excl})
	if got := pointDiskNames(res.Point); !slices.Equal(got, []string{e.names[2], e.names[0]}) && !slices.Equal(got, []string{e.names[0], e.names[2]}) {
		t.Fatalf("point disks %v, want %s and %s", got, e.names[0], e.names[2])
	}
	if k := skippedKinds(pointMeta(t, res.Point).SkippedDisks); len(k) != 1 || k[e.names[1]] != vsphere.SkipExcluded {
		t.Errorf("point skipped %v, want %s excluded", k, e.names[1])
	}
	if len(res.Warnings) != 0 {
		t.Errorf("an excluded disk warns: %q", res.Warnings)
	}
	images := runningImages(t, e.sim, "edge")
	checkPoint(t, e.repo, res.Point, []string{e.names[0], e.names[2]}, [][]byte{images[0], images[2]})
	for _, dr := range res.Disks {
		if dr.Full {
			t.Errorf("disk %s read whole with another disk excluded: %s", dr.Name, dr.FullReason)
		}
	}
	cfg, err := backupd.PointVMConfig(ctx, e.repo, res.Point)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := cfg.Disk(e.names[1]); d.NotBackedUp != vsphere.SkipExcluded {
		t.Errorf("vm/config disk %+v, want not_backed_up excluded", d)
	}
	// included again: that disk alone is read whole, and its new point is
	// the VM's disk, not the first point's version: data the first point
	// holds and the guest has since zeroed must read as zeros (a full read
	// through CBT "*" does not report zeroed areas)
	e.write(t, 5)
	g, err := e.sim.Guest("edge")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WriteZeros(1, 0, 4<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteRandomBlocks(1, 2, esxsim.BlockSize, e.rng); err != nil {
		t.Fatal(err)
	}
	res3 := e.backup(t, backupd.JobOptions{})
	for _, dr := range res3.Disks {
		if full := dr.Name == e.names[1]; dr.Full != full {
			t.Errorf("disk %s full=%v (%s) after it was included again", dr.Name, dr.Full, dr.FullReason)
		}
	}
	checkPoint(t, e.repo, res3.Point, e.names, runningImages(t, e.sim, "edge"))
	// the first point still holds the disk as it was
	if _, ok := first.Point.Disk(e.names[1]); !ok {
		t.Error("the first point lost the disk")
	}
	// excluding every disk is refused, naming them
	all, _ := backupd.ParseDiskExclusions([]string{"*"})
	_, err = backupd.BackupVM(ctx, e.repo, e.conn, "edge", backupd.JobOptions{Transports: []string{"file"}, ExcludeDisks: all})
	if !errors.Is(err, vsphere.ErrNotBackupable) || !strings.Contains(err.Error(), "no disk left") {
		t.Errorf("backup with every disk excluded: %v", err)
	}
	if pts, err := e.repo.Points(ctx, "edge"); err != nil || len(pts) != 3 {
		t.Errorf("points after the refused backup: %d (%v), want 3", len(pts), err)
	}
	if snaps := vmSnapshots(t, e.conn, e.sim, "edge"); len(snaps) != 0 {
		t.Errorf("snapshots after the refused backup: %v", snaps)
	}
}

// TestBackupKeepsUserSnapshots backs up a VM that has its users' own
// snapshot tree (one named like cairn's, with its own description): the
// backups read through it incrementally, and cleanup never removes a
// snapshot cairn did not take.
func TestBackupKeepsUserSnapshots(t *testing.T) {
	e := newEdgeEnv(t, []esxsim.DiskSpec{{Size: 8 << 20}, {Size: 4 << 20}})
	ctx := context.Background()
	vm, err := e.sim.VM(e.conn.Client, "edge")
	if err != nil {
		t.Fatal(err)
	}
	user := []string{"before-upgrade", "cairn-before-patch"}
	for _, n := range user {
		task, err := vm.CreateSnapshot(ctx, n, "the admin's own snapshot", false, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		e.write(t, 4)
	}
	for i := range 3 {
		res := e.backup(t, backupd.JobOptions{})
		checkPoint(t, e.repo, res.Point, e.names, runningImages(t, e.sim, "edge"))
		for _, dr := range res.Disks {
			if dr.Full != (i == 0) {
				t.Errorf("backup %d disk %s full=%v (%s)", i, dr.Name, dr.Full, dr.FullReason)
			}
		}
		if got := vmSnapshots(t, e.conn, e.sim, "edge"); !slices.Equal(got, user) {
			t.Fatalf("snapshots after backup %d: %v, want the users' %v untouched", i, got, user)
		}
		e.write(t, 3)
	}
}

// TestBackupDiskGrownAddedRemoved grows a disk, adds one and removes one
// between backups: the grown disk is read whole at its new size (ESXi
// resets CBT on an extend), the new disk is read whole, the removed disk
// is absent from the new point and still in the old one, and each point
// equals the VM.
func TestBackupDiskGrownAddedRemoved(t *testing.T) {
	e := newEdgeEnv(t, []esxsim.DiskSpec{{Size: 8 << 20}, {Size: 4 << 20}, {Size: 4 << 20}})
	ctx := context.Background()
	first := e.backup(t, backupd.JobOptions{})
	if err := e.sim.GrowDisk(ctx, "edge", 1, 6<<20); err != nil {
		t.Fatal(err)
	}
	g, err := e.sim.Guest("edge")
	if err != nil {
		t.Fatal(err)
	}
	// esxsim may reorder its disk indexes after a reconfiguration: find
	// the grown disk by its size
	grown := -1
	sdisks, err := e.sim.Disks("edge")
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range sdisks {
		if d.Size == 6<<20 {
			grown = i
		}
	}
	if err := g.WriteRandom(grown, 5<<20, 100<<10, e.rng); err != nil { // beyond the old end
		t.Fatal(err)
	}
	e.names = e.diskNames(t)
	grownName := e.names[grown]
	ref, err := e.sim.VMRef("edge")
	if err != nil {
		t.Fatal(err)
	}
	added, err := e.conn.AddDisk(ctx, ref, vsphere.AddDiskSpec{Capacity: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e.names = e.diskNames(t)
	e.write(t, 2)
	res := e.backup(t, backupd.JobOptions{})
	for _, dr := range res.Disks {
		switch dr.Name {
		case grownName:
			if !dr.Full || !strings.Contains(dr.FullReason, "size changed") {
				t.Errorf("grown disk %s: full=%v (%s)", dr.Name, dr.Full, dr.FullReason)
			}
		case added.Name:
			if !dr.Full || !strings.Contains(dr.FullReason, "first backup of this disk") {
				t.Errorf("added disk %s: full=%v (%s)", dr.Name, dr.Full, dr.FullReason)
			}
		default:
			if dr.Full {
				t.Errorf("disk %s read whole: %s", dr.Name, dr.FullReason)
			}
		}
	}
	if d, _ := res.Point.Disk(grownName); d.Size != 6<<20 {
		t.Errorf("grown disk size in the point %d", d.Size)
	}
	checkPoint(t, e.repo, res.Point, e.names, runningImages(t, e.sim, "edge"))
	// remove the third disk
	disks, err := e.sim.Disks("edge")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.conn.RemoveDisk(ctx, ref, disks[2].Key); err != nil {
		t.Fatal(err)
	}
	removed := e.names[2]
	e.names = e.diskNames(t)
	e.write(t, 2)
	res = e.backup(t, backupd.JobOptions{})
	if _, ok := res.Point.Disk(removed); ok || len(res.Point.Disks) != 3 {
		t.Errorf("point after removing %s holds %v", removed, pointDiskNames(res.Point))
	}
	if k := skippedKinds(pointMeta(t, res.Point).SkippedDisks); len(k) != 0 {
		t.Errorf("a removed disk is recorded as skipped: %v", k)
	}
	checkPoint(t, e.repo, res.Point, e.names, runningImages(t, e.sim, "edge"))
	if _, ok := first.Point.Disk(removed); !ok {
		t.Errorf("the first point lost disk %s", removed)
	}
	if _, err := e.repo.OpenDisk(ctx, first.Point, removed); err != nil {
		t.Errorf("the first point's %s: %v", removed, err)
	}
}

// TestBackupUnsnapshotableVMs backs up, in one job, a healthy VM beside
// VMs vSphere will not snapshot (esxsim is made to behave as vCenter does
// for each: the property vCenter shows, or the fault the snapshot task
// fails with): each fails with its cause and its fix, the healthy VM's
// point is committed, and no snapshot is left.
func TestBackupUnsnapshotableVMs(t *testing.T) {
	d := []esxsim.DiskSpec{{Size: 4 << 20}}
	more := []esxsim.VMSpec{
		{Name: "ft-secondary", Disks: d}, {Name: "ft-legacy", Disks: d}, {Name: "orphan", Disks: d},
		{Name: "encrypted", Disks: d}, {Name: "moving", Disks: d}, {Name: "vmotion", Disks: d},
		{Name: "lost-ds", Disks: []esxsim.DiskSpec{{Size: 4 << 20}, {Size: 4 << 20, Datastore: "ds2"}}},
	}
	e := newEdgeEnv(t, d, more...)
	edits := map[string]func(vm *mo.VirtualMachine){
		"ft-secondary": func(vm *mo.VirtualMachine) {
			vm.Config.FtInfo = &types.FaultToleranceSecondaryConfigInfo{FaultToleranceConfigInfo: types.FaultToleranceConfigInfo{Role: 2, InstanceUuids: []string{"a", "b"}}}
		},
		"ft-legacy": func(vm *mo.VirtualMachine) {
			vm.Config.FtInfo = &types.FaultTolerancePrimaryConfigInfo{FaultToleranceConfigInfo: types.FaultToleranceConfigInfo{Role: 1, InstanceUuids: []string{"a", "b"}}}
		},
		"orphan": func(vm *mo.VirtualMachine) { vm.Runtime.ConnectionState = types.VirtualMachineConnectionStateOrphaned },
		"encrypted": func(vm *mo.VirtualMachine) {
			vm.Config.KeyId = &types.CryptoKeyId{KeyId: "k1", ProviderId: &types.KeyProviderId{Id: "kms"}}
		},
	}
	for name, edit := range edits {
		if err := e.sim.EditVM(name, edit); err != nil {
			t.Fatal(err)
		}
	}
	// what the snapshot tasks fail with on ESXi: a legacy FT primary
	// refuses snapshots, an encrypted VM refuses a user without the
	// cryptographic privileges, a VM being migrated is busy
	faults := map[string]types.BaseMethodFault{
		"ft-legacy": &types.NotSupported{},
		"encrypted": &types.NoPermission{PrivilegeId: "Cryptographer.Access"},
		"moving":    &types.TaskInProgress{},
	}
	for name, f := range faults {
		if err := e.sim.SetSnapshotFault(name, f); err != nil {
			t.Fatal(err)
		}
	}
	// a vMotion in progress, as vCenter shows it: a running
	// RelocateVM_Task in the VM's recentTask
	if err := e.sim.SetMigrating("vmotion", true); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetDatastoreAccessible("ds2", false); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"ft-secondary": {"secondary VM", "Fault Tolerance", "back up the primary"},
		"ft-legacy":    {"Fault Tolerance is on", "turn Fault Tolerance off"},
		"orphan":       {"orphaned", "register its .vmx again"},
		"encrypted":    {"encrypted", "Cryptographic operations"},
		"moving":       {"vMotion", "retry when the operation has ended"},
		"vmotion":      {"being migrated", "RelocateVM_Task", "retry when the migration has ended"},
		"lost-ds":      {"datastore ds2", "not accessible", "exclude the disk"},
	}
	permanent := map[string]bool{"ft-secondary": true, "ft-legacy": true, "orphan": true, "encrypted": true}
	vms := []string{"ft-secondary", "ft-legacy", "orphan", "edge", "encrypted", "moving", "vmotion", "lost-ds"}
	outs := backupd.BackupVMs(context.Background(), e.repo, e.conn, vms, backupd.JobOptions{Transports: []string{"file"}}, backupd.ParallelOptions{VMs: 2, PerHost: 2})
	for i, o := range outs {
		name := vms[i]
		if name == "edge" {
			if o.Err != nil {
				t.Errorf("the healthy VM failed beside the others: %v", o.Err)
			}
			continue
		}
		if o.Err == nil {
			t.Errorf("%s: backed up, want a clear refusal", name)
			continue
		}
		for _, w := range want[name] {
			if !strings.Contains(o.Err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", name, o.Err, w)
			}
		}
		if !vsphere.IsNotSnapshotable(o.Err) || errors.Is(o.Err, vsphere.ErrNotBackupable) != permanent[name] {
			t.Errorf("%s: error %v: NotSnapshotable %v, permanent %v (want %v)", name, o.Err, vsphere.IsNotSnapshotable(o.Err), errors.Is(o.Err, vsphere.ErrNotBackupable), permanent[name])
		}
		if snaps := vmSnapshots(t, e.conn, e.sim, name); len(snaps) != 0 {
			t.Errorf("%s: snapshots left %v", name, snaps)
		}
	}
	// once the migration has ended the VM is backed up
	if err := e.sim.SetMigrating("vmotion", false); err != nil {
		t.Fatal(err)
	}
	if _, err := backupd.BackupVM(context.Background(), e.repo, e.conn, "vmotion", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		t.Errorf("backup after the migration: %v", err)
	}
}

// TestBackupCLIExcludeDisk runs cairn backup with --exclude-disk on a VM
// that also has an independent disk: the excluded disk is listed as
// excluded, the independent one is a warning on stderr, --json carries
// both, and a bad pattern is refused before anything runs.
func TestBackupCLIExcludeDisk(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "app", Disks: []esxsim.DiskSpec{
		{Size: 8 << 20}, {Size: 4 << 20}, {Size: 4 << 20, Mode: string(types.VirtualDiskModeIndependent_nonpersistent)},
	}}}})
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	repo := cliRepo(t)
	base := []string{"--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--transport", "file", "--vm", "app"}
	res := runCairn(t, env, append(base, "--exclude-disk", "app/scsi0:1")...)
	if res.code != 0 || !strings.Contains(res.stdout, "disk scsi0-1 excluded") ||
		!strings.Contains(res.stderr, "warning: app: disk scsi0-2 (Hard disk 3) not backed up: independent disk") {
		t.Fatalf("backup --exclude-disk: exit %d\nstdout %s\nstderr %s", res.code, res.stdout, res.stderr)
	}
	res = runCairn(t, env, append(base, "--exclude-disk", "Hard disk 2", "--json")...)
	var items []struct {
		Result *backupd.Result `json:"result"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &items); err != nil || len(items) != 1 || items[0].Result == nil {
		t.Fatalf("--json: %v %q", err, res.stdout)
	}
	r := items[0].Result
	if k := skippedKinds(r.Skipped); len(k) != 2 || k["scsi0-1"] != vsphere.SkipExcluded || k["scsi0-2"] != vsphere.SkipIndependent || len(r.Warnings) != 1 {
		t.Errorf("--json skipped %+v warnings %q", r.Skipped, r.Warnings)
	}
	out := mustCairn(t, "--repo", repo, "points", "--vm", "app")
	if !strings.Contains(out, "scsi0-1 (not backed up: excluded)") || !strings.Contains(out, "scsi0-2 (not backed up: independent)") {
		t.Errorf("cairn points does not name the disks left out:\n%s", out)
	}
	out = mustCairn(t, "--repo", repo, "jobs", "--history")
	if !strings.Contains(out, "warning: disk scsi0-2 (Hard disk 3) not backed up: independent disk") {
		t.Errorf("cairn jobs does not show the warning:\n%s", out)
	}
	res = runCairn(t, env, append(base, "--exclude-disk", "app/")...)
	if res.code == 0 || !strings.Contains(res.stderr, `--exclude-disk: disk exclusion "app/": no disk`) {
		t.Errorf("bad pattern: exit %d %q", res.code, res.stderr)
	}
}

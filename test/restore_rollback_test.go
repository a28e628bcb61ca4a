package test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestQuickRollback changes 1% of a VM's disks after a point (data and a
// stretch of zeros), powers it off and rolls it back in place: the disks
// equal the point again and the bytes written (data plus zeroed ranges)
// are at most 1.1x the changed bytes rounded to 64 KiB blocks. A running
// VM is refused; after a CBT reset the rollback says CBT cannot answer
// and --full overwrites everything instead.
func TestQuickRollback(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{
		Name: "db", ChangeTracking: true,
		Disks: []esxsim.DiskSpec{{Size: 64 << 20}, {Size: 32 << 20, Controller: esxsim.ControllerSATA}},
	}}})
	conn := connectSim(t, sim)
	ctx := context.Background()
	repo := newTestRepo(t)
	rng := rand.New(rand.NewPCG(21, 22))
	g, _ := sim.Guest("db")
	for i := 0; i < 2; i++ {
		if _, err := g.WriteRandomBlocks(i, 200, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := backupd.BackupVM(ctx, repo, conn, "db", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		t.Fatal(err)
	}
	p := latestPoint(t, repo, "db")
	// 1% of each disk changes: random blocks and a stretch of zeros
	changed := int64(0)
	disks, _ := sim.Disks("db")
	for i, d := range disks {
		n := int(d.Size / 100 / esxsim.BlockSize)
		exts, err := g.WriteRandomBlocks(i, n-1, esxsim.BlockSize, rng)
		if err != nil {
			t.Fatal(err)
		}
		changed += int64(len(blocksOf(exts, esxsim.BlockSize))) * esxsim.BlockSize
		if err := g.WriteZeros(i, 0, esxsim.BlockSize); err != nil {
			t.Fatal(err)
		}
		changed += esxsim.BlockSize
	}
	req := backupd.RestoreRequest{Point: p, InPlace: true, Create: vsphere.CreateSpec{Name: "db"}}
	if _, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), req, restoreOpts(sim)); !errors.Is(err, backupd.ErrNotPoweredOff) {
		t.Fatalf("rollback of a running VM: %v", err)
	}
	ref, _ := conn.LookupVM(ctx, "db")
	if err := conn.PowerOff(ctx, ref); err != nil {
		t.Fatal(err)
	}
	res, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), req, restoreOpts(sim))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := sim.DiskLocalPaths("db")
	var written int64
	for _, d := range res.Disks {
		sameAsPoint(t, repo, p, d.Name, files[d.Name])
		written += d.BytesWritten + d.ZeroBytes
	}
	if res.Mode != "rollback" || written == 0 || float64(written) > 1.1*float64(changed) {
		t.Errorf("rollback (%s) wrote %d bytes for %d changed bytes (limit 1.1x)", res.Mode, written, changed)
	}
	// after a CBT reset the changeId of the point means nothing
	if err := g.WriteRandom(0, 0, esxsim.BlockSize, rng); err != nil {
		t.Fatal(err)
	}
	if err := sim.ResetCBT("db"); err != nil {
		t.Fatal(err)
	}
	if _, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), req, restoreOpts(sim)); !errors.Is(err, backupd.ErrCBTCannotAnswer) {
		t.Fatalf("rollback after a CBT reset: %v", err)
	}
	req.Full = true
	res, err = backupd.Restore(ctx, repo, backupd.NewVSphere(conn), req, restoreOpts(sim))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Disks {
		sameAsPoint(t, repo, p, d.Name, files[d.Name])
	}
	if res.Mode != "full" {
		t.Errorf("mode %s", res.Mode)
	}
}

// TestRestoreDiskToVM restores one data disk of a point to another VM: a
// new disk appears on the asked controller, equal to the point's disk,
// and only its data travelled; an unknown controller fails and leaves the
// target's disks as they were.
func TestRestoreDiskToVM(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim, conn, repo := restoreFixture(t)
	ctx := context.Background()
	p := latestPoint(t, repo, "biosvm")
	before, _ := sim.DiskLocalPaths("efivm")
	res, err := backupd.RestoreDisk(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreDiskRequest{Point: p, Disk: "scsi0-1", TargetVM: "efivm", Controller: "scsi0"}, restoreOpts(sim))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := sim.DiskLocalPaths("efivm")
	if len(after) != len(before)+1 || res.Disks[0].Target != "scsi0-1" {
		t.Fatalf("disks before %v after %v, result %+v", before, after, res.Disks)
	}
	sameAsPoint(t, repo, p, "scsi0-1", after[res.Disks[0].Target])
	if _, data := readPoint(t, repo, p, "scsi0-1"); res.Disks[0].BytesWritten != data {
		t.Errorf("wrote %d bytes, the disk holds %d", res.Disks[0].BytesWritten, data)
	}
	if _, err := backupd.RestoreDisk(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreDiskRequest{Point: p, Disk: "scsi0-1", TargetVM: "efivm", Controller: "scsi7"}, restoreOpts(sim)); err == nil {
		t.Fatal("restore to a missing controller worked")
	}
	opts := restoreOpts(sim)
	opts.NBDCommand = "nbdkit -t 1 -U {socket} -f --filter=error file {disk_local_path} error-pwrite-rate=100% error=EIO"
	opts.NBD.Retries = 1
	if _, err := backupd.RestoreDisk(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreDiskRequest{Point: p, Disk: "scsi0-0", TargetVM: "efivm"}, opts); err == nil {
		t.Fatal("restore through a failing server worked")
	}
	if now, _ := sim.DiskLocalPaths("efivm"); len(now) != len(after) {
		t.Errorf("a failed disk restore left a disk: %v", now)
	}
}

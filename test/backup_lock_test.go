package test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestBackupRefusedWhileVMLocked: while another holder has the VM's
// repository lock (a backup in another process, with its snapshot taken),
// a backup job of that VM is refused before it touches the VM: the
// holder's snapshot is not removed as a leftover and no snapshot is made.
func TestBackupRefusedWhileVMLocked(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 1 << 20}}}}})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	ctx := context.Background()
	holder, err := repo.LockVM(ctx, "web-1", "cairn backup job in another process")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := conn.FindVM(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	live := vsphere.SnapshotPrefix + "live-run"
	if _, err := vm.CreateSnapshot(ctx, live, "off"); err != nil {
		t.Fatal(err)
	}
	_, err = backupd.BackupVM(ctx, repo, conn, "web-1", backupd.JobOptions{Transports: []string{"file"}})
	var locked *blockmap.VMLockedError
	if !errors.As(err, &locked) || locked.Holder.Operation != "cairn backup job in another process" {
		t.Fatalf("backup of a locked VM: %v, want a VMLockedError naming the holder", err)
	}
	if snaps := vmSnapshots(t, conn, sim, "web-1"); !slices.Equal(snaps, []string{live}) {
		t.Fatalf("snapshots after the refused backup: %v, want the live run's %s only", snaps, live)
	}
	holder.Release()
	if _, err := backupd.BackupVM(ctx, repo, conn, "web-1", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		t.Fatalf("backup once the lock is free: %v", err)
	}
	if snaps := vmSnapshots(t, conn, sim, "web-1"); len(snaps) != 0 {
		t.Errorf("snapshots after a backup: %v (the leftover is removed once no one holds the VM)", snaps)
	}
}

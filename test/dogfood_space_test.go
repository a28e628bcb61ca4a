package test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRestoreThickBeyondDatastore: a thick restore that does not fit the
// simulated datastore's real free space (the lab's datastore is a local
// directory) fails with NoDiskSpace, through nfc as through nbd, before a
// disk file is allocated, instead of filling the machine's own disk with
// fallocate and going on with a VM whose disk was never written.
func TestRestoreThickBeyondDatastore(t *testing.T) {
	testutil.RequireRoot(t)
	ds := filepath.Join(t.TempDir(), "ds")
	if out, err := exec.Command("mkdir", "-p", ds).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", ds).CombinedOutput(); err != nil {
		testutil.Missing(t, fmt.Sprintf("a tmpfs mount: %v %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", ds).Run() })
	sim := esxsimtest.Start(t, esxsim.Options{VMs: restoreVMs()[1:], DatastoreDir: ds})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	ctx := context.Background()
	if _, err := backupd.BackupVM(ctx, repo, conn, "efivm", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		t.Fatal(err)
	}
	p := latestPoint(t, repo, "efivm")
	cfg := vmConfigOf(t, repo, p)
	for i := range cfg.Disks {
		cfg.Disks[i].Capacity = 64 << 20 // larger than the whole datastore
	}
	var before unix.Statfs_t
	unix.Statfs(ds, &before)
	for _, tr := range []string{"nfc", "nbd"} {
		name := "thick-" + tr
		opts := restoreOpts(sim)
		opts.Transports = []string{tr}
		_, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, Config: cfg,
			Create: vsphere.CreateSpec{Name: name, Provisioning: "thick"}}, opts)
		if err == nil || !strings.Contains(err.Error(), "not enough space") {
			t.Errorf("%s: thick restore beyond the datastore: %v, want not enough space", tr, err)
		}
		noVMNamed(t, sim, conn, name)
	}
	var after unix.Statfs_t
	unix.Statfs(ds, &after)
	if after.Bavail < before.Bavail {
		t.Errorf("the failed restores left %d blocks allocated on the datastore", before.Bavail-after.Bavail)
	}
}

// vmConfigOf reads the VM configuration a point recorded.
func vmConfigOf(t *testing.T, repo *blockmap.Repo, p blockmap.Point) *vmconfig.Config {
	t.Helper()
	data, err := repo.Attachment(context.Background(), p, vmconfig.AttachmentConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := vmconfig.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// restoreFixture backs up biosvm and efivm once (file transport).
func restoreFixture(t *testing.T) (*esxsim.Sim, *vsphere.Conn, *blockmap.Repo) {
	t.Helper()
	sim := esxsimtest.Start(t, esxsim.Options{DVPortgroups: 1, VMs: restoreVMs()})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	rng := rand.New(rand.NewPCG(11, 12))
	for _, vm := range []string{"biosvm", "efivm"} {
		scribble(t, sim, vm, rng)
		g, _ := sim.Guest(vm)
		for i := 0; i < 2; i++ { // enough data for many write requests
			if _, err := g.WriteRandomBlocks(i, 40, 64<<10, rng); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := backupd.BackupVM(context.Background(), repo, conn, vm, backupd.JobOptions{Transports: []string{"file"}}); err != nil {
			t.Fatal(err)
		}
	}
	return sim, conn, repo
}

func latestPoint(t *testing.T, repo *blockmap.Repo, vm string) blockmap.Point {
	t.Helper()
	p, err := repo.ResolvePoint(context.Background(), vm, "latest")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// noVMNamed fails if a VM with that name (or its -failed-restore twin)
// exists or its directory is left on the datastore.
func noVMNamed(t *testing.T, sim *esxsim.Sim, conn *vsphere.Conn, name string) {
	t.Helper()
	for _, n := range []string{name, name + backupd.FailedRestoreSuffix} {
		if _, err := conn.LookupVM(context.Background(), n); !errors.Is(err, vsphere.ErrVMNotFound) {
			t.Errorf("VM %s: %v, want it gone", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(sim.DatastoreDir, name)); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(filepath.Join(sim.DatastoreDir, name))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory of %s still on the datastore: %v %v", name, err, names)
	}
}

// TestRestoreFaults: the write server fails 1% of writes (retried, the
// restore is exact), 100% (clean failure, no VM left); the datastore is
// full (no VM left); the name exists (refused, VM untouched); a point
// without configuration (clear error; restorable with a configuration).
func TestRestoreFaults(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim, conn, repo := restoreFixture(t)
	ctx := context.Background()
	p := latestPoint(t, repo, "biosvm")

	t.Run("1% of writes fail", func(t *testing.T) {
		opts := restoreOpts(sim)
		opts.NBDCommand = "nbdkit -t 1 -U {socket} -f --filter=error file {disk_local_path} error-pwrite-rate=1% error=EIO"
		opts.NBD = nbd.Options{MaxRequestSize: 4 << 10, Retries: 8}
		opts.NBD.RetryBackoff, opts.NBD.MaxRetryBackoff = fastNBD().RetryBackoff, fastNBD().MaxRetryBackoff
		// The filter fails writes at random: a restore of a few hundred
		// writes can see none fail, so a run without a failed write is
		// repeated (to a new VM) a few times before the test gives up.
		var retries int64
		for attempt := 1; attempt <= 4 && retries == 0; attempt++ {
			name := fmt.Sprintf("flaky%d", attempt)
			res, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: name}}, opts)
			if err != nil {
				t.Fatal(err)
			}
			files, _ := sim.DiskLocalPaths(name)
			for _, d := range res.Disks {
				sameAsPoint(t, repo, p, d.Name, files[d.Name])
				retries += d.Retries
			}
		}
		if retries == 0 {
			t.Errorf("no write was retried in 4 restores: the error filter did not bite")
		}
	})
	t.Run("every write fails", func(t *testing.T) {
		opts := restoreOpts(sim)
		opts.NBDCommand = "nbdkit -t 1 -U {socket} -f --filter=error file {disk_local_path} error-pwrite-rate=100% error=EIO"
		opts.NBD.Retries = 2
		_, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "broken"}}, opts)
		if err == nil || !strings.Contains(err.Error(), "nbd write") {
			t.Fatalf("restore through a failing server: %v", err)
		}
		var re *backupd.RestoreError
		if !errors.As(err, &re) || re.LeftVM != "" || re.Removed != "broken" {
			t.Errorf("the VM was left behind, or the error does not say it was removed: %v", err)
		}
		noVMNamed(t, sim, conn, "broken")
	})
	t.Run("datastore full", func(t *testing.T) {
		sim.SetDatastoreFree(1 << 20)
		defer sim.SetDatastoreFree(-1)
		_, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "full", Provisioning: "thick"}}, restoreOpts(sim))
		if err == nil || !strings.Contains(err.Error(), "not enough space") {
			t.Fatalf("restore to a full datastore: %v", err)
		}
		noVMNamed(t, sim, conn, "full")
	})
	t.Run("name exists", func(t *testing.T) {
		before, _ := sim.DiskLocalPaths("efivm")
		sums := map[string][]byte{}
		for n, f := range before {
			sums[n], _ = os.ReadFile(f)
		}
		_, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "efivm"}}, restoreOpts(sim))
		if !errors.Is(err, vsphere.ErrVMExists) || !strings.Contains(err.Error(), `"efivm"`) {
			t.Fatalf("restore over an existing name: %v", err)
		}
		for n, f := range before {
			b, _ := os.ReadFile(f)
			if string(b) != string(sums[n]) {
				t.Errorf("disk %s of the existing VM changed", n)
			}
		}
	})
	t.Run("replace", func(t *testing.T) {
		ep := latestPoint(t, repo, "efivm")
		g, _ := sim.Guest("efivm")
		if err := g.WriteRandom(0, 0, 1<<20, rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		res, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: ep, Replace: true, Create: vsphere.CreateSpec{Name: "efivm"}}, restoreOpts(sim))
		if err != nil {
			t.Fatal(err)
		}
		files, _ := sim.DiskLocalPaths("efivm")
		for _, d := range res.Disks {
			sameAsPoint(t, repo, ep, d.Name, files[d.Name])
		}
		if res.Mode != "replace" {
			t.Errorf("mode %s", res.Mode)
		}
	})
	t.Run("nfc refused, nbd next", func(t *testing.T) {
		sim.SetDenyImport(true)
		defer sim.SetDenyImport(false)
		opts := restoreOpts(sim)
		opts.Transports = []string{backupd.WriteTransportNFC, backupd.WriteTransportNBD}
		res, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "fallback"}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		files, _ := sim.DiskLocalPaths("fallback")
		for _, d := range res.Disks {
			if d.Transport != backupd.WriteTransportNBD {
				t.Errorf("disk %s written through %q, want nbd after nfc was refused", d.Name, d.Transport)
			}
			sameAsPoint(t, repo, p, d.Name, files[d.Name])
		}
		opts.Transports = []string{backupd.WriteTransportNFC}
		_, err = backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "refused"}}, opts)
		if err == nil || !strings.Contains(err.Error(), "VApp.Import") && !strings.Contains(err.Error(), "ermission") {
			t.Fatalf("nfc only, refused: %v", err)
		}
		noVMNamed(t, sim, conn, "refused")
	})
	t.Run("point without configuration", func(t *testing.T) {
		bare := p
		bare.Attachments = nil
		_, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: bare, Create: vsphere.CreateSpec{Name: "bare"}}, restoreOpts(sim))
		if !errors.Is(err, backupd.ErrNoVMConfig) {
			t.Fatalf("restore of a point without configuration: %v", err)
		}
		noVMNamed(t, sim, conn, "bare")
		cfg, err := backupd.PointVMConfig(ctx, repo, p)
		if err != nil {
			t.Fatal(err)
		}
		cfg.CPUs = 1
		if _, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), backupd.RestoreRequest{Point: bare, Config: cfg, Create: vsphere.CreateSpec{Name: "bare"}}, restoreOpts(sim)); err != nil {
			t.Fatalf("with a configuration: %v", err)
		}
		if got := restoredConfig(t, conn, "bare"); got.CPUs != 1 {
			t.Errorf("restored with the given configuration: %d CPUs", got.CPUs)
		}
	})
}

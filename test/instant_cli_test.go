package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestInstantRecoveryCLI drives `cairn restore instant` against the
// simulated vCenter: Ctrl-C stops the session and removes everything;
// --migrate-now moves the VM to datastore1 and ends; a killed session's
// VM and datastore are removed by `cairn restore cleanup`; a point
// without a VM configuration is refused with the fix.
func TestInstantRecoveryCLI(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{DVPortgroups: 1, VMs: restoreVMs()})
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	repoDir := cliRepo(t)
	g, _ := sim.Guest("efivm")
	if _, err := g.WriteRandomBlocks(0, 50, esxsim.BlockSize, rand.New(rand.NewPCG(9, 10))); err != nil {
		t.Fatal(err)
	}
	vc := []string{"--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint}
	if r := runCairn(t, env, append([]string{"--repo", repoDir, "backup", "--vm", "efivm", "--transport", "file"}, vc...)...); r.code != 0 {
		t.Fatalf("backup: %s", r.stderr)
	}
	conn := connectSim(t, sim)
	ctx := context.Background()
	args := func(name string, more ...string) []string {
		port, err := testutil.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		pm := fmt.Sprintf("127.0.0.1:%d", port)
		sim.SetNFSPortmapper(pm)
		a := append([]string{"--repo", repoDir, "restore", "instant", "--vm", "efivm", "--name", name, "--network", "VM Network=DC0_DVPG0",
			"--power-on", "--nfs-host", "127.0.0.1", "--listen", "127.0.0.1:0", "--portmap", pm,
			"--session-dir", filepath.Join(t.TempDir(), "session")}, vc...)
		return append(a, more...)
	}
	// start runs a session in the background until it says the VM runs.
	start := func(name string, more ...string) (*exec.Cmd, *serveLogBuffer) {
		cmd := exec.Command(buildCairn(t), args(name, more...)...)
		cmd.Env = append(os.Environ(), env...)
		out := &serveLogBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "kill -USR1") {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the session never came up:\n%s", out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return cmd, out
	}
	gone := func(what, vm string) {
		t.Helper()
		if ds := sim.NASDatastores(); len(ds) != 0 {
			t.Errorf("%s: NFS datastores left: %+v", what, ds)
		}
		if _, err := conn.LookupVM(ctx, vm); !errors.Is(err, vsphere.ErrVMNotFound) {
			t.Errorf("%s: VM %s left: %v", what, vm, err)
		}
	}

	// Ctrl-C: stop
	cmd, out := start("efi-cli")
	if st := vmPowerState(t, conn, "efi-cli"); st != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("the instant VM is %s", st)
	}
	if len(sim.NASDatastores()) != 1 {
		t.Errorf("NFS datastores while running: %+v", sim.NASDatastores())
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "stopped") {
		t.Errorf("Ctrl-C: %v\n%s", err, out.String())
	}
	gone("Ctrl-C", "efi-cli")

	// SIGUSR1: migrate to datastore1
	cmd, out = start("efi-usr1", "--migrate-to", "datastore1")
	cmd.Process.Signal(syscall.SIGUSR1)
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "migrated to datastore1") {
		t.Errorf("SIGUSR1: %v\n%s", err, out.String())
	}
	if ds := sim.NASDatastores(); len(ds) != 0 {
		t.Errorf("after migration: NFS datastores left: %+v", ds)
	}
	if st := vmPowerState(t, conn, "efi-usr1"); st != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("the migrated VM is %s", st)
	}
	if _, err := os.Stat(filepath.Join(sim.DatastoreDir, "efi-usr1")); err != nil {
		t.Errorf("the migrated VM's files on datastore1: %v", err)
	}

	// --migrate-now without --migrate-to is refused before anything starts
	r := runCairn(t, env, args("efi-x", "--migrate-now")...)
	if r.code == 0 || !strings.Contains(r.stderr, "--migrate-to") {
		t.Errorf("--migrate-now alone: exit %d: %s", r.code, r.stderr)
	}

	// SIGKILL: the VM and datastore stay; cleanup removes them
	cmd, _ = start("efi-killed")
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := conn.LookupVM(ctx, "efi-killed"); err != nil {
		t.Fatalf("after SIGKILL the VM is gone already: %v", err)
	}
	r = runCairn(t, env, append([]string{"--repo", repoDir, "restore", "cleanup"}, vc...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "efi-killed") || !strings.Contains(r.stdout, "cairn-efivm-") {
		t.Errorf("cleanup after a killed session: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	gone("cleanup", "efi-killed")

	// a point without vm/config.json
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repoDir, "import", "--vm", "bare", "--disk", "sda", img)
	a := args("bare-instant")
	for i := range a {
		if a[i] == "efivm" {
			a[i] = "bare"
		}
	}
	r = runCairn(t, env, a...)
	if r.code == 0 || !strings.Contains(r.stderr, "--vm-config") {
		t.Errorf("a point without a VM configuration: exit %d: %s", r.code, r.stderr)
	}
	gone("no config", "bare-instant")

	// the foreground sessions' steps are in the job log
	jobs := mustCairn(t, "--repo", repoDir, "jobs")
	for _, want := range []string{"efivm (instant start of efi-cli)", "efivm (instant stop of efi-cli)",
		"efivm (instant start of efi-usr1)", "efivm (instant migrate of efi-usr1 to datastore1)", "efivm (instant start of efi-killed)"} {
		if !strings.Contains(jobs, want) {
			t.Errorf("cairn jobs lacks %q:\n%s", want, jobs)
		}
	}
}

package test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// startRestore starts `cairn ARGS` and returns once it logs that it writes
// a disk.
func startRestore(t *testing.T, env []string, args ...string) (*exec.Cmd, *serveLogBuffer) {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr := &serveLogBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "writing disk") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the restore never started writing: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, stderr
}

// TestRestoreCLI drives `cairn restore vm` against the simulator: a
// restore as a new VM (listed by cairn jobs), a refused existing name, a
// SIGINT that removes the half-created VM, a SIGKILL whose leftover the
// next `cairn restore cleanup` removes; the password never shows in any
// output.
func TestRestoreCLI(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim := esxsimtest.Start(t, esxsim.Options{DVPortgroups: 1, VMs: restoreVMs()})
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	repoDir := cliRepo(t)
	g, _ := sim.Guest("efivm")
	if _, err := g.WriteRandomBlocks(0, 100, esxsim.BlockSize, rand.New(rand.NewPCG(5, 6))); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	collect := func(r cairnResult) cairnResult {
		logs.WriteString(r.stdout + r.stderr)
		return r
	}
	collect(runCairn(t, env, "--repo", repoDir, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--vm", "efivm", "--transport", "file"))
	base := func(tmpl string, more ...string) []string {
		return append([]string{"--repo", repoDir, "restore", "vm", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
			"--vm", "efivm", "--nbd-command", tmpl}, more...)
	}
	nbdOnly := func(tmpl string, more ...string) []string {
		return base(tmpl, append([]string{"--transport", "nbd"}, more...)...)
	}
	conn := connectSim(t, sim)
	ctx := context.Background()

	// existing name without --replace
	r := collect(runCairn(t, env, base(restoreNBDCommand)...))
	if r.code == 0 || !strings.Contains(r.stderr, "--replace") {
		t.Fatalf("restore over the existing efivm: exit %d: %s", r.code, r.stderr)
	}
	// --host with --cluster: refused before connecting (the vCenter
	// named here does not answer), no job recorded
	r = collect(runCairn(t, env, "--repo", repoDir, "restore", "vm", "--vcenter", "https://127.0.0.1:1/sdk", "--insecure",
		"--vm", "efivm", "--name", "efi-both", "--host", "DC0_H0", "--cluster", "DC0_C0"))
	if r.code == 0 || !strings.Contains(r.stderr, "--host and --cluster exclude each other") {
		t.Errorf("restore --host --cluster: exit %d: %s", r.code, r.stderr)
	}
	// an unknown --host is no transport failure: the restore stops with
	// it at once (not logged as nfc failing, not tried again through nbd)
	r = collect(runCairn(t, env, base(restoreNBDCommand, "--name", "efi-nohost", "--host", "esx-nope")...))
	if r.code == 0 || !strings.Contains(r.stderr, `host "esx-nope"`) || !strings.Contains(r.stderr, "give --host NAME") ||
		strings.Contains(r.stderr, "trying the next") || strings.Contains(r.stderr, "transport=nbd") {
		t.Errorf("restore --host esx-nope: exit %d: %s", r.code, r.stderr)
	}
	// a new VM, through the default transports (nfc first)
	r = collect(runCairn(t, env, base(restoreNBDCommand, "--name", "efi-copy", "--network", "VM Network=DC0_DVPG0", "--json")...))
	if r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	var res backupd.RestoreResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.VM != "efi-copy" || len(res.Disks) != 2 || res.Disks[0].Transport != backupd.WriteTransportNFC {
		t.Fatalf("restore output %q: %v", r.stdout, err)
	}
	// the text output says the VM was powered on
	r = collect(runCairn(t, env, base(restoreNBDCommand, "--name", "efi-on", "--network", "VM Network=DC0_DVPG0", "--power-on")...))
	if r.code != 0 || !strings.Contains(r.stdout, "\tpowered on") {
		t.Errorf("restore --power-on: exit %d, stdout %q", r.code, r.stdout)
	}
	// SIGINT mid-write: the VM it created is removed
	slow := "nbdkit -t 1 -U {socket} -f --filter=delay file {disk_local_path} delay-write=200ms"
	cmd, stderr := startRestore(t, env, nbdOnly(slow, "--name", "efi-int")...)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("an interrupted restore exited 0: %s", stderr.String())
	}
	logs.WriteString(stderr.String())
	if _, err := conn.LookupVM(ctx, "efi-int"); !errors.Is(err, vsphere.ErrVMNotFound) {
		t.Errorf("after Ctrl-C the half-created VM is still there: %v\n%s", err, stderr.String())
	}
	// SIGKILL mid-write: the VM stays, marked; cleanup removes it
	cmd, stderr = startRestore(t, env, nbdOnly(slow, "--name", "efi-kill")...)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	logs.WriteString(stderr.String())
	inc, err := conn.IncompleteRestores(ctx)
	if err != nil || len(inc) != 1 || inc[0].Name != "efi-kill" || inc[0].PID != cmd.Process.Pid {
		t.Fatalf("after SIGKILL: incomplete restores %+v %v", inc, err)
	}
	r = collect(runCairn(t, env, "restore", "cleanup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint))
	if r.code != 0 || !strings.Contains(r.stdout, "removed efi-kill") {
		t.Fatalf("cleanup: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	noVMNamed(t, sim, conn, "efi-kill")
	// a second cleanup has nothing to do and says so
	r = collect(runCairn(t, env, "restore", "cleanup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint))
	if r.code != 0 || !strings.Contains(r.stdout, "no VM left by an interrupted restore") {
		t.Errorf("second cleanup: exit %d, stdout %q", r.code, r.stdout)
	}
	if _, err := conn.LookupVM(ctx, "efi-copy"); err != nil {
		t.Errorf("cleanup touched the finished restore: %v", err)
	}
	// cairn jobs lists the restores
	var jobs []backupd.JobRecord
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repoDir, "jobs", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, j := range jobs {
		if j.Kind == backupd.JobRestore {
			states[j.State]++
			if j.State == backupd.JobOK && j.Target == "" {
				t.Errorf("restore job %s: no target VM recorded", j.ID)
			}
			if j.State == backupd.JobOK && (j.BytesRead == 0 || j.BytesRead < j.BytesWritten) {
				t.Errorf("restore job %s: %d bytes read, %d written", j.ID, j.BytesRead, j.BytesWritten)
			}
		}
	}
	// refused + unknown host = failed 2, ok + powered on = ok 2 (--host
	// with --cluster never started); the one stopped by SIGINT is
	// cancelled, the killed one interrupted
	if states[backupd.JobOK] != 2 || states[backupd.JobFailed] != 2 || states[backupd.JobCancelled] != 1 || states[backupd.JobInterrupted] != 1 {
		t.Errorf("restore jobs by state %v", states)
	}
	out := mustCairn(t, "--repo", repoDir, "jobs")
	if !strings.Contains(out, "efivm (restore)") || !strings.Contains(out, "efivm (restore to efi-copy)") {
		t.Errorf("cairn jobs does not show restores:\n%s", out)
	}
	if strings.Contains(logs.String(), sim.Password) {
		t.Errorf("the vCenter password appears in cairn's output")
	}
}

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRestoreJSONFailure: restore vm --json and restore disk --json always
// print one JSON document on stdout. A failed restore printed nothing
// there; now it prints {"error": ...} with the point and what the restore
// left (a new VM created and removed again), and exits non-zero. restore
// disk --json had no totals; it has bytes_written like restore vm.
func TestRestoreJSONFailure(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim := esxsimtest.Start(t, esxsim.Options{VMs: restoreVMs()[1:]}) // efivm: two disks
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	repo := cliRepo(t)
	g, _ := sim.Guest("efivm")
	rng := rand.New(rand.NewPCG(3, 4))
	for d := range 2 {
		if _, err := g.WriteRandomBlocks(d, 8, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
	}
	conn := []string{"--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint}
	run := func(args ...string) cairnResult {
		t.Helper()
		return runCairn(t, env, append(append([]string{"--repo", repo}, args...), conn...)...)
	}
	if r := run("backup", "--vm", "efivm", "--transport", "file"); r.code != 0 {
		t.Fatalf("backup: %s", r.stderr)
	}
	type failure struct {
		Error     string `json:"error"`
		ExitCode  int    `json:"exit_code"`
		VM        string `json:"vm"`
		Point     string `json:"point"`
		RemovedVM string `json:"removed_vm"`
		LeftVM    string `json:"left_vm"`
		Cancelled *bool  `json:"cancelled"`
	}
	parse := func(t *testing.T, what string, r cairnResult) failure {
		t.Helper()
		var f failure
		if err := json.Unmarshal([]byte(r.stdout), &f); err != nil || f.Error == "" || r.code == 0 || f.ExitCode != r.code {
			t.Fatalf("%s: exit %d, stdout %q (%v), want a JSON error object; stderr %s", what, r.code, r.stdout, err, r.stderr)
		}
		return f
	}

	t.Run("new VM created, write fails, VM removed", func(t *testing.T) {
		r := run("restore", "vm", "--vm", "efivm", "--name", "broken", "--transport", "nbd", "--nbd-command", "false {socket}", "--json")
		f := parse(t, "restore vm --json with a failing NBD server", r)
		if f.VM != "efivm" || f.Point == "" || f.RemovedVM != "broken" || f.LeftVM != "" || f.Cancelled == nil || *f.Cancelled {
			t.Fatalf("restore vm --json failure: %+v", f)
		}
		if _, err := connectSim(t, sim).LookupVM(context.Background(), "broken"); !errors.Is(err, vsphere.ErrVMNotFound) {
			t.Fatalf("VM broken: %v, want it removed as the JSON says", err)
		}
	})
	t.Run("Ctrl-C", func(t *testing.T) {
		slow := "nbdkit -t 1 -U {socket} -f --filter=delay file {disk_local_path} delay-write=200ms"
		cmd := exec.Command(buildCairn(t), append([]string{"--repo", repo, "restore", "vm", "--vm", "efivm", "--name", "stopped",
			"--transport", "nbd", "--nbd-command", slow, "--json"}, conn...)...)
		cmd.Env = append(os.Environ(), env...)
		var stdout bytes.Buffer
		stderr := &serveLogBuffer{}
		cmd.Stdout, cmd.Stderr = &stdout, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "writing disk"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("the restore never started writing: %s", stderr.String())
			}
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		r := cairnResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
		if err == nil {
			t.Fatalf("an interrupted restore exited 0: %s", r.stdout)
		}
		f := parse(t, "restore vm --json stopped by SIGINT", r)
		if f.Cancelled == nil || !*f.Cancelled || f.RemovedVM != "stopped" {
			t.Fatalf("restore vm --json after SIGINT: %+v", f)
		}
	})
	t.Run("refused before creating anything", func(t *testing.T) {
		r := run("restore", "vm", "--vm", "efivm", "--json") // efivm exists: no --replace
		f := parse(t, "restore vm --json over an existing VM", r)
		if f.RemovedVM != "" || f.LeftVM != "" || !strings.Contains(f.Error, "--replace") {
			t.Fatalf("restore vm --json over efivm: %+v", f)
		}
	})
	t.Run("restore disk totals", func(t *testing.T) {
		r := run("restore", "disk", "--vm", "efivm", "--disk", "scsi0-0", "--to-vm", "efivm", "--transport", "nbd", "--nbd-command", restoreNBDCommand, "--json")
		var out struct {
			BytesWritten *int64 `json:"bytes_written"`
			Disks        []struct {
				BytesWritten int64 `json:"bytes_written"`
			} `json:"disks"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
			t.Fatalf("restore disk --json: exit %d, %v: %q %s", r.code, err, r.stdout, r.stderr)
		}
		if out.BytesWritten == nil || len(out.Disks) != 1 || *out.BytesWritten != out.Disks[0].BytesWritten || *out.BytesWritten == 0 {
			t.Fatalf("restore disk --json: no bytes_written total equal to its disk's: %s", r.stdout)
		}
	})
	t.Run("restore disk failure", func(t *testing.T) {
		r := run("restore", "disk", "--vm", "efivm", "--disk", "nope-0", "--to-vm", "efivm", "--json")
		f := parse(t, "restore disk --json of a disk the point lacks", r)
		if f.VM != "efivm" || !strings.Contains(f.Error, "nope-0") {
			t.Fatalf("restore disk --json failure: %+v", f)
		}
	})
}

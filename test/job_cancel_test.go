package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestInterruptedJobsCancelled: a backup or an import stopped by Ctrl-C
// (SIGINT) is recorded in the job log as cancelled, not failed: cairn jobs
// shows RESULT cancelled and --json state "cancelled". Both were recorded
// as failed (with STORED 0 B), counted by serve's report as failures.
func TestInterruptedJobsCancelled(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	lastJob := func(t *testing.T, repo, kind string) backupd.JobRecord {
		t.Helper()
		var jobs []backupd.JobRecord
		if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "jobs", "--json")), &jobs); err != nil {
			t.Fatal(err)
		}
		for i := len(jobs) - 1; i >= 0; i-- {
			if jobs[i].Kind == kind || kind == backupd.JobBackup && jobs[i].Kind == "" {
				return jobs[i]
			}
		}
		t.Fatalf("no %s job in %+v", kind, jobs)
		return backupd.JobRecord{}
	}
	interrupt := func(t *testing.T, cmd *exec.Cmd) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Fatal("the interrupted command exited 0")
		}
	}
	check := func(t *testing.T, repo, kind string) {
		t.Helper()
		j := lastJob(t, repo, kind)
		if j.State != backupd.JobCancelled || j.End.IsZero() {
			t.Fatalf("interrupted %s recorded as %q (%s), want cancelled", kind, j.State, j.Error)
		}
		table := mustCairn(t, "--repo", repo, "jobs")
		if !strings.Contains(table, j.ID) || !strings.Contains(table, " cancelled ") {
			t.Fatalf("cairn jobs does not show %s cancelled:\n%s", j.ID, table)
		}
	}

	t.Run("backup", func(t *testing.T) {
		sim, env := cliSim(t)
		repo := cliRepo(t)
		g, _ := sim.Guest("app")
		if _, err := g.WriteRandomBlocks(0, 30, esxsim.BlockSize, rand.New(rand.NewPCG(5, 6))); err != nil {
			t.Fatal(err)
		}
		cmd, _ := startReadingBackup(t, env, "--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
			"--vm", "app", "--transport", "nbd", "--nbd-command", "nbdkit -t 1 -U {socket} -f --filter=delay file {disk_local_path} delay-read=300ms")
		interrupt(t, cmd)
		check(t, repo, backupd.JobBackup)
	})

	t.Run("import", func(t *testing.T) {
		repo := cliRepo(t)
		cmd := startSlowImport(t, repo)
		interrupt(t, cmd)
		check(t, repo, backupd.JobImport)
	})
}

// startSlowImport starts `cairn import` into repo from an nbdkit export of
// 4 GiB with data all over and each read delayed, so the import runs far
// longer than a test waits, and returns once its running record is in the
// job log (written before the source is read). The process is killed at
// the end of the test.
func startSlowImport(t *testing.T, repo string) *exec.Cmd {
	t.Helper()
	testutil.RequireTools(t, "nbdkit")
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	srv := exec.Command("nbdkit", "-t", "1", "-U", sock, "-f", "--filter=delay", "sparse-random", "4G", "percent=10", "delay-read=200ms")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nbdkit never made its socket")
		}
	}
	cmd := exec.Command(buildCairn(t), "--repo", repo, "import", "--vm", "kvm1", "--disk", "vda", fmt.Sprintf("nbd+unix:///?socket=%s", sock))
	cmd.Env = append(os.Environ(), "CAIRN_REPO=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	log := filepath.Join(repo, "jobs", "jobs.jsonl")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(log); strings.Contains(string(b), `"kind":"import"`) {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatal("the import never recorded its job")
		}
	}
}

package test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// cliSim starts a simulator with one VM "app" (2 disks) and a vmx-04 VM,
// and returns the environment for cairn with its credentials.
func cliSim(t *testing.T) (*esxsim.Sim, []string) {
	t.Helper()
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "app", Disks: []esxsim.DiskSpec{{Size: 16 << 20}, {Size: 8 << 20}}},
		{Name: "old", HardwareVersion: "vmx-04", Disks: []esxsim.DiskSpec{{Size: 8 << 20}}},
		{Name: "diskless"},
		{Name: "golden", Template: true, Disks: []esxsim.DiskSpec{{Size: 8 << 20}}},
	}})
	return sim, []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
}

func cliRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", dir, "init")
	return dir
}

func TestBackupCLIErrors(t *testing.T) {
	sim, env := cliSim(t)
	repo := cliRepo(t)
	base := []string{"--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--transport", "file"}
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"wrong password", []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=hunter2-wrong"}, []string{"--vm", "app"}, "wrong user name or password"},
		{"wrong thumbprint", env, []string{"--vm", "app", "--thumbprint", strings.Repeat("0A:", 31) + "0A"}, sim.Thumbprint},
		{"untrusted", env, []string{"--vm", "app", "--thumbprint", ""}, "--thumbprint " + sim.Thumbprint},
		{"vm not found", env, []string{"--vm", "nosuchvm"}, "virtual machine not found"},
		{"cbt unsupported", env, []string{"--vm", "old"}, "changed block tracking is not supported"},
		{"no disks", env, []string{"--vm", "diskless"}, "VM diskless has no virtual disks"},
		{"template", env, []string{"--vm", "golden"}, "template"},
		{"bad quiesce", env, []string{"--vm", "app", "--quiesce", "maybe"}, "use auto, require or off"},
		{"no credentials", []string{"CAIRN_VC_USER=", "CAIRN_VC_PASSWORD="}, []string{"--vm", "app"}, "no vCenter credentials"},
	}
	for _, tc := range cases {
		res := runCairn(t, tc.env, append(append([]string{}, base...), tc.args...)...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error containing %q", tc.name, res.code, res.stderr, tc.want)
		}
		if strings.Contains(res.stderr+res.stdout, "hunter2-wrong") || strings.Contains(res.stderr+res.stdout, sim.Password) {
			t.Errorf("%s: a password was printed", tc.name)
		}
	}
	cred := filepath.Join(t.TempDir(), "cred")
	if err := os.WriteFile(cred, []byte(sim.User+"\n"+sim.Password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCairn(t, nil, append(base, "--vm", "app", "--credentials", cred)...)
	if res.code == 0 || !strings.Contains(res.stderr, "chmod 600") {
		t.Errorf("credentials file 0644: exit %d %q", res.code, res.stderr)
	}
	if err := os.Chmod(cred, 0o600); err != nil {
		t.Fatal(err)
	}
	res = runCairn(t, []string{"CAIRN_VC_USER=", "CAIRN_VC_PASSWORD="}, append(base, "--vm", "app", "--credentials", cred, "--parallel-vms", "2", "--per-host", "1")...)
	if res.code != 0 || !strings.Contains(res.stdout, "app\t") {
		t.Fatalf("backup with a 0600 credentials file: exit %d %s %s", res.code, res.stdout, res.stderr)
	}
	// --insecure works, with a warning
	res = runCairn(t, env, "--repo", repo, "backup", "--vcenter", sim.URL.String(), "--insecure", "--transport", "file", "--vm", "app")
	if res.code != 0 || !strings.Contains(res.stderr, "NOT verified") {
		t.Errorf("--insecure: exit %d, stderr %s", res.code, res.stderr)
	}
	vs := []string{"--repo", repo, "verify-source", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--transport", "file", "--vm", "app"}
	if out := mustCairnEnv(t, env, vs...); !strings.Contains(out, "\tok") {
		t.Errorf("verify-source right after a backup: %s", out)
	}
	if err := sim.SilentlyMissChange("app", 1, 5*esxsim.BlockSize, 10); err != nil {
		t.Fatal(err)
	}
	// The same check through the spelling: cairn verify --against-source.
	res = runCairn(t, env, append([]string{"--repo", repo, "verify", "--against-source"}, vs[3:]...)...)
	if res.code != 1 || !strings.Contains(res.stdout, "CBT MISSED") || !strings.Contains(res.stdout, "missed 327680+65536") {
		t.Errorf("verify-source after a change CBT missed: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// --repair stores a corrected point; the next check finds nothing.
	res = runCairn(t, env, append([]string{"--repo", repo, "verify", "--against-source=true", "--repair"}, vs[3:]...)...)
	if !strings.Contains(res.stdout, "missed 327680+65536") || !strings.Contains(res.stdout, "\trepaired: new point ") {
		t.Errorf("verify --repair: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if out := mustCairnEnv(t, env, vs...); !strings.Contains(out, "\tok") {
		t.Errorf("verify-source after --repair: %s", out)
	}
	var jobs []backupd.JobRecord
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "jobs", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, j := range jobs {
		if j.Kind != backupd.JobBackup {
			continue
		}
		switch j.State {
		case backupd.JobOK:
			ok++
		case backupd.JobFailed:
			failed++
			if j.Error == "" || j.End.IsZero() {
				t.Errorf("failed job without error or end: %+v", j)
			}
		}
	}
	// connection failures happen before a job starts; not-found, CBT,
	// no-disk and template failures are jobs
	if ok != 2 || failed != 4 {
		t.Errorf("jobs: %d ok, %d failed, want 2 and 4: %+v", ok, failed, jobs)
	}
}

// TestBackupKilledMidRun kills `cairn backup` with SIGKILL while it reads
// (nbdkit's delay filter slows the reads), then checks that the next run
// removes the stale snapshot, the earlier point is intact, the changeId was
// not advanced (the next backup reads every change since the first point)
// and the new point is correct.
func TestBackupKilledMidRun(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim, env := cliSim(t)
	repoDir := cliRepo(t)
	args := func(tmpl string) []string {
		return []string{"--repo", repoDir, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
			"--vm", "app", "--transport", "nbd", "--nbd-command", tmpl, "--json"}
	}
	g, _ := sim.Guest("app")
	rng := rand.New(rand.NewPCG(3, 4))
	for d := 0; d < 2; d++ {
		if _, err := g.WriteRandomBlocks(d, 30, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
	}
	mustCairnEnv(t, env, args(nbdkitTemplate)...)
	names := diskNames(t, sim, "app")
	first := runningImages(t, sim, "app")
	var changedBlocks = map[int]map[int64]bool{0: {}, 1: {}}
	for d := 0; d < 2; d++ {
		exts, err := g.WriteRandomBlocks(d, 20, esxsim.BlockSize, rng)
		if err != nil {
			t.Fatal(err)
		}
		changedBlocks[d] = blocksOf(exts, esxsim.BlockSize)
	}
	// the killed run
	cmd, _ := startReadingBackup(t, env, args("nbdkit -t 1 -U {socket} -f --filter=delay file {disk_local_path} delay-read=300ms")...)
	time.Sleep(200 * time.Millisecond)
	killedPID := cmd.Process.Pid
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	conn := connectSim(t, sim)
	if snaps := vmSnapshots(t, conn, sim, "app"); len(snaps) != 1 || !strings.HasPrefix(snaps[0], "cairn-") {
		t.Fatalf("after SIGKILL the VM has snapshots %v, want the stale cairn one", snaps)
	}
	// the next run cleans up and backs up what changed since the first point
	var outs []struct {
		Result backupd.Result `json:"result"`
		Error  string         `json:"error"`
	}
	if err := json.Unmarshal([]byte(mustCairnEnv(t, env, args(nbdkitTemplate)...)), &outs); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 1 || outs[0].Error != "" {
		t.Fatalf("next run: %+v", outs)
	}
	if snaps := vmSnapshots(t, conn, sim, "app"); len(snaps) != 0 {
		t.Fatalf("snapshots left after the next run: %v", snaps)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "cairn-nbd-"+strconv.Itoa(killedPID)+"-*")); len(left) != 0 {
		t.Errorf("the killed run's NBD directories are still there: %v", left)
	}
	repo, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	pts, err := repo.Points(context.Background(), "app")
	if err != nil || len(pts) != 2 {
		t.Fatalf("points %d %v", len(pts), err)
	}
	checkPoint(t, repo, pts[0], names, first)
	checkPoint(t, repo, pts[1], names, runningImages(t, sim, "app"))
	for _, dr := range outs[0].Result.Disks {
		idx := indexOf(names, dr.Name)
		first, _ := pts[0].Disk(dr.Name)
		fm, _ := backupd.ReadDiskMeta(first)
		second, _ := pts[1].Disk(dr.Name)
		sm, _ := backupd.ReadDiskMeta(second)
		if dr.Full || sm.BaseChangeID != fm.ChangeID {
			t.Errorf("disk %s: full=%v, queried since %q; want incremental since the first point's %q", dr.Name, dr.Full, sm.BaseChangeID, fm.ChangeID)
		}
		if want := int64(len(changedBlocks[idx])) * esxsim.BlockSize; dr.BytesRead != want {
			t.Errorf("disk %s read %d bytes, want the %d changed since the first point", dr.Name, dr.BytesRead, want)
		}
	}
	out := mustCairn(t, "--repo", repoDir, "jobs")
	if strings.Count(out, " ok ") != 2 || !strings.Contains(out, "interrupted") {
		t.Errorf("cairn jobs:\n%s", out)
	}
}

// mustCairnEnv runs cairn with extra environment and fails the test unless
// it exits 0; it returns stdout.
func mustCairnEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	res := runCairn(t, env, args...)
	if res.code != 0 {
		t.Fatalf("cairn %s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res.stdout
}

// TestBackupInterruptedCleansUp stops `cairn backup` with SIGINT while it
// reads: it must remove its snapshot and stop its NBD server itself, record
// the job as cancelled and leave no point.
func TestBackupInterruptedCleansUp(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim, env := cliSim(t)
	repoDir := cliRepo(t)
	g, _ := sim.Guest("app")
	if _, err := g.WriteRandomBlocks(0, 40, esxsim.BlockSize, rand.New(rand.NewPCG(1, 9))); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "nbdkit.pid")
	cmd, stderr := startReadingBackup(t, env, "--repo", repoDir, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
		"--vm", "app", "--transport", "nbd", "--parallel-disks", "1",
		"--nbd-command", "nbdkit -t 1 -U {socket} -f -P "+pidFile+" --filter=delay file {disk_local_path} delay-read=300ms")
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("an interrupted backup exited 0: %s", stderr.String())
	}
	conn := connectSim(t, sim)
	if snaps := vmSnapshots(t, conn, sim, "app"); len(snaps) != 0 {
		t.Errorf("an interrupted backup left snapshots %v", snaps)
	}
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 && syscall.Kill(pid, 0) == nil {
			t.Errorf("nbdkit (pid %d) still runs after the backup was interrupted", pid)
		}
	}
	var jobs []backupd.JobRecord
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repoDir, "jobs", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].State != backupd.JobCancelled || !strings.Contains(jobs[0].Error, "canceled") {
		t.Errorf("jobs after an interrupt: %+v", jobs)
	}
	if out := mustCairn(t, "--repo", repoDir, "points", "--json"); strings.Contains(out, "app") {
		t.Errorf("an interrupted backup left a point: %s", out)
	}
}

// startReadingBackup starts `cairn ARGS` with env added and returns once
// it logs that it is reading a disk; its stderr stays readable.
func startReadingBackup(t *testing.T, env []string, args ...string) (*exec.Cmd, *serveLogBuffer) {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr := &serveLogBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "reading disk") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the backup never started reading: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, stderr
}

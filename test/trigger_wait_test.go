package test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/lab"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestTriggerWaitCancelled runs `cairn trigger --wait` against a real
// `cairn serve` whose backup reads through a throttled nbdkit, and stops
// serve (SIGTERM) while the backup reads: trigger says CANCELLED and exits
// with exitCancelled (3), which a script can tell from a failed backup
// (exit 1: a backup whose NBD server cannot start, in the same serve).
func TestTriggerWaitCancelled(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	bin := buildCairn(t)
	dir := t.TempDir()
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "slow", Disks: []esxsim.DiskSpec{{Size: 16 << 20}}},
		{Name: "broken", Disks: []esxsim.DiskSpec{{Size: 8 << 20}}},
	}})
	for _, vm := range []string{"slow", "broken"} {
		g, err := sim.Guest(vm)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.WriteRandomBlocks(0, 16, esxsim.BlockSize, rand.New(rand.NewPCG(7, 8))); err != nil {
			t.Fatal(err)
		}
	}
	creds := filepath.Join(dir, "vc-credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := serveFreeAddr(t)
	job := func(name, vm, nbd string) lab.JobConfig {
		return lab.JobConfig{Name: name, VCenter: "sim", VMs: []string{vm}, Schedule: "30 22 1 1 *", // never during the test
			Retention: lab.RetentionConfig{KeepLast: 5}, Transports: []string{"nbd"}, NBDCommand: nbd, Quiesce: "auto", RetryDelay: "1s"}
	}
	cfg := lab.ServeConfig{
		Repository:  filepath.Join(dir, "repo"),
		Listen:      listen,
		Parallelism: lab.ParallelismConfig{VMs: 2, PerHost: 2},
		Verify:      lab.VerifyConfig{Schedule: "30 22 1 1 *"},
		VCenters:    []lab.VCenterConfig{{Name: "sim", URL: sim.URL.String(), Credentials: creds, Thumbprint: sim.Thumbprint}},
		Jobs: []lab.JobConfig{
			job("slow", "slow", "nbdkit -t 1 -f -r -U {socket} --filter=rate file {disk_local_path} rate=64K"),
			job("broken", "broken", "nbdkit -t 1 -f -r -U {socket} no-such-plugin-cairn-test"),
		},
	}
	cfgFile := writeServeConfig(t, dir, cfg)
	var logs serveLogBuffer
	srv, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	api := serveAPI{base: "http://" + listen, repo: cfg.Repository}
	serveWaitFor(t, "serve to answer", exited, &logs, func() bool {
		var v any
		return api.getJSON("/api/v1/vms", &v)
	})

	// A failed backup: exit 1, FAILED.
	failed := runCairn(t, nil, "--repo", cfg.Repository, "trigger", "--vm", "broken", "--wait")
	if failed.code != 1 || !strings.Contains(failed.stdout, "broken: FAILED") || !strings.Contains(failed.stderr, "1 backups failed") {
		t.Errorf("trigger --wait of a failing backup: exit %d\n%s%s", failed.code, failed.stdout, failed.stderr)
	}

	// A cancelled one: serve stops while the backup reads.
	trig := exec.Command(bin, "--repo", cfg.Repository, "trigger", "--vm", "slow", "--wait")
	var stdout, stderr bytes.Buffer
	trig.Stdout, trig.Stderr = &stdout, &stderr
	if err := trig.Start(); err != nil {
		t.Fatal(err)
	}
	trigDone := make(chan error, 1)
	go func() { trigDone <- trig.Wait() }()
	t.Cleanup(func() {
		if trig.ProcessState == nil {
			trig.Process.Kill()
		}
	})
	serveWaitFor(t, "the backup reading through the throttled nbdkit", exited, &logs, func() bool {
		return len(processesMatching(t, "rate=64K")) > 0
	})
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop within 30s of SIGTERM:\n%s", logs.String())
	}
	var code int
	select {
	case err := <-trigDone:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("trigger --wait did not end within 30s of serve stopping:\n%s%s", stdout.String(), stderr.String())
	}
	out, errOut := stdout.String(), stderr.String()
	if code != 3 || !strings.Contains(out, "slow: CANCELLED") || !strings.Contains(errOut, "1 backups cancelled") || strings.Contains(out+errOut, "FAILED") {
		t.Errorf("trigger --wait of a backup serve cancelled: exit %d, want 3 (cancelled, not failed)\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

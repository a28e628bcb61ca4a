package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/lab"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestLabCLI runs `cairn lab` as a child process, backs one of its VMs up
// twice with `cairn backup`, and checks that every file restored from each
// point is what the lab's journal says the guest had written at that
// point's snapshot; then SIGTERM must stop the lab cleanly.
func TestLabCLI(t *testing.T) {
	bin := buildCairn(t)
	dir := t.TempDir()
	labDir := filepath.Join(dir, "lab")
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, "lab", "--dir", labDir, "--vms", "2", "--interval", "200ms", "--disk-size-mib", "64")
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()

	cfg := waitLabConfig(t, filepath.Join(labDir, "cairn.yaml"), exited, &errb)
	vc := cfg.VCenters[0]
	if cfg.Repository != filepath.Join(labDir, "repo") || len(cfg.Jobs) != 1 || cfg.Jobs[0].Tags[0] != lab.Tag {
		t.Fatalf("cairn.yaml: %+v", cfg)
	}
	if !strings.Contains(out.String(), vc.URL) || !strings.Contains(out.String(), "govc ls") {
		t.Errorf("lab printed:\n%s", out.String())
	}

	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	journal := filepath.Join(labDir, "journal", "lab-vm-2.jsonl")
	backup := func(transport ...string) (backupd.Result, time.Time, time.Time) {
		t.Helper()
		before := time.Now()
		args := append([]string{"--repo", repo, "backup", "--vcenter", vc.URL, "--credentials", vc.Credentials,
			"--thumbprint", vc.Thumbprint, "--vm", "lab-vm-2", "--json"}, transport...)
		stdout := mustCairn(t, args...)
		after := time.Now()
		var res []struct {
			Result *backupd.Result `json:"result"`
			Error  string          `json:"error"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res) != 1 || res[0].Result == nil {
			t.Fatalf("backup output %q: %v", stdout, err)
		}
		return *res[0].Result, before, after
	}

	fileTransport := []string{"--transport", "file"}
	r1, b1, a1 := backup(fileTransport...)
	gen1 := checkLabPoint(t, repo, journal, r1, b1, a1)
	// Wait until the guest has written two more batches, so the second
	// point must hold newer content than the first.
	waitJournalBatch(t, journal, gen1+2, exited)
	r2, b2, a2 := backup(fileTransport...)
	gen2 := checkLabPoint(t, repo, journal, r2, b2, a2)
	if gen2 < gen1+2 {
		t.Errorf("second point holds batch %d, first %d: the second backup missed later writes", gen2, gen1)
	}
	for _, d := range r2.Disks {
		if d.Full {
			t.Errorf("second backup of disk %s was full (%s), want incremental", d.Name, d.FullReason)
		}
	}

	// The NBD command of cairn.yaml works too.
	testutil.RequireTools(t, "qemu-nbd")
	waitJournalBatch(t, journal, gen2+1, exited)
	r3, b3, a3 := backup("--transport", "nbd", "--nbd-command", cfg.Jobs[0].NBDCommand)
	if gen3 := checkLabPoint(t, repo, journal, r3, b3, a3); gen3 <= gen2 {
		t.Errorf("third point holds batch %d, second %d", gen3, gen2)
	}
	// Only the system disk changed (the data disk is read by nobody).
	if d := r3.Disks[0]; d.Transport != "nbd" || d.BytesRead == 0 {
		t.Errorf("system disk %s: read %d bytes through %q, want nbd", d.Name, d.BytesRead, d.Transport)
	}

	// SIGTERM: the lab stops with status 0 and leaves no process behind.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("lab exited with %v:\n%s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("lab did not stop within 30s of SIGTERM:\n%s", errb.String())
	}
	if left := processesInGroup(t, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("processes left in the lab's process group: %v", left)
	}
	if _, err := os.Stat(filepath.Join(labDir, "datastore")); !os.IsNotExist(err) {
		t.Errorf("lab left its datastore behind: %v", err)
	}
}

// waitLabConfig waits for the lab's cairn.yaml and parses it.
func waitLabConfig(t *testing.T, path string, exited <-chan error, stderr *bytes.Buffer) lab.ServeConfig {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := os.ReadFile(path)
		if err == nil {
			var cfg lab.ServeConfig
			if err := yaml.Unmarshal(raw, &cfg); err != nil || len(cfg.VCenters) != 1 {
				t.Fatalf("cairn.yaml (%v):\n%s", err, raw)
			}
			return cfg
		}
		select {
		case err := <-exited:
			t.Fatalf("cairn lab exited early (%v):\n%s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 60s:\n%s", path, stderr.String())
		}
	}
}

// waitJournalBatch waits until the journal records batch n.
func waitJournalBatch(t *testing.T, path string, n int, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, err := lab.ReadJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		if bs := lab.Batches(entries); len(bs) > 0 && bs[len(bs)-1] >= n {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("cairn lab exited (%v)", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal %s never reached batch %d", path, n)
		}
	}
}

// checkLabPoint restores every disk's first partition of a point and
// compares it with the journal state of the batch the point holds (read
// from lab.GenerationFile in the point itself). The batch must fit the
// backup's time: on disk before the backup ended, and the next batch not
// on disk before it started. It returns that batch.
func checkLabPoint(t *testing.T, repo, journal string, r backupd.Result, before, after time.Time) int {
	t.Helper()
	if len(r.Disks) != 2 {
		t.Fatalf("point %s has %d disks, want 2 (system and data)", r.PointID, len(r.Disks))
	}
	restore := func(disk string, part int) string {
		dest := filepath.Join(t.TempDir(), "restored")
		mustCairn(t, "--repo", repo, "restore-file", "--vm", "lab-vm-2", "--point", r.PointID, "--disk", disk,
			"--part", strconv.Itoa(part), "/", dest)
		return dest
	}
	return checkJournalTrees(t, "point "+r.PointID, journal, []string{r.Disks[0].Name, r.Disks[1].Name}, restore, before, after)
}

// checkJournalTrees compares the guest files of a lab VM's point with its
// journal: root(disk, part) gives the directory holding a partition's
// files (restored, or in the mount). The generation file names the last
// batch the point holds; that batch must have begun before the backup
// ended (after) and the next one must not have been on disk before it
// started (before). Every file must be as the journal says after that
// batch. It returns the batch.
func checkJournalTrees(t *testing.T, where, journal string, disks []string, root func(disk string, part int) string, before, after time.Time) int {
	t.Helper()
	system := root(disks[0], 1)
	raw, err := os.ReadFile(filepath.Join(system, lab.GenerationFile))
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	gen, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("%s: generation file holds %q", where, raw)
	}
	// The journal line of a batch is written just after the batch reaches
	// the disk: wait for it.
	waitJournalBatch(t, journal, gen, nil)
	entries, err := lab.ReadJournal(journal)
	if err != nil {
		t.Fatal(err)
	}
	times := lab.BatchTimes(entries)
	if start := times[gen].Start; start.After(after) {
		t.Errorf("%s holds batch %d, begun at %s, after the backup ended at %s", where, gen, start, after)
	}
	if next, ok := times[gen+1]; ok && next.End.Before(before) {
		t.Errorf("%s holds batch %d, but batch %d was on disk at %s, before the backup started at %s", where, gen, gen+1, next.End, before)
	}
	type partition struct{ disk, part int }
	parts := []partition{{0, 1}}
	if len(disks) > 1 {
		parts = append(parts, partition{1, 1})
		if len(lab.State(entries, 1, 2, gen)) > 0 { // ext4 (made when mkfs.ext4 is installed)
			parts = append(parts, partition{1, 2})
		} else if _, err := exec.LookPath("mkfs.ext4"); err == nil {
			t.Fatalf("mkfs.ext4 is installed but the journal lists no ext4 files on the data disk")
		}
	}
	for _, pt := range parts {
		dir := system
		if pt != (partition{0, 1}) {
			dir = root(disks[pt.disk], pt.part)
		}
		want := lab.State(entries, pt.disk, pt.part, gen)
		got := hashTree(t, dir)
		if len(want) < 20 {
			t.Fatalf("journal state of disk %d partition %d at batch %d has only %d files", pt.disk, pt.part, gen, len(want))
		}
		at := fmt.Sprintf("%s disk %d partition %d (batch %d)", where, pt.disk, pt.part, gen)
		for p, w := range want {
			if g, ok := got[p]; !ok {
				t.Errorf("%s: %s missing", at, p)
			} else if g != w {
				t.Errorf("%s: %s is %+v, journal says %+v", at, p, g, w)
			}
		}
		for p := range got {
			if _, ok := want[p]; !ok && !strings.HasPrefix(p, "/lost+found/") {
				t.Errorf("%s: %s should not exist", at, p)
			}
		}
	}
	return gen
}

// hashTree returns the sha256 and size of every regular file under root,
// keyed by its path inside the guest ("/etc/hostname").
func hashTree(t *testing.T, root string) map[string]lab.FileState {
	t.Helper()
	out := make(map[string]lab.FileState)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		sum := sha256.Sum256(data)
		out["/"+filepath.ToSlash(rel)] = lab.FileState{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// processesInGroup lists the processes still in process group pgid.
func processesInGroup(t *testing.T, pgid int) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): state ppid pgrp ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			out = append(out, d.Name()+" "+string(stat[:i+1]))
		}
	}
	return out
}

func TestLabCLIErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vms", "0"}, "--vms 0: want at least 1"},
		{[]string{"--disk-size-mib", "10"}, "--disk-size-mib 10: want at least 64"},
		{[]string{"--interval", "1ns"}, "interval 1ns is too short"},
		{[]string{"stray"}, "no arguments"},
	} {
		res := runCairn(t, nil, append([]string{"lab", "--dir", dir}, tc.args...)...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("cairn lab %v: exit %d, stderr %q, want %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cairn.yaml")); !os.IsNotExist(err) {
		t.Errorf("a refused lab wrote cairn.yaml: %v", err)
	}
	// cairn alone, without cairn-lab beside it or on PATH.
	alone := filepath.Join(t.TempDir(), "cairn")
	data, err := os.ReadFile(buildCairn(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(alone, "lab", "--dir", dir)
	cmd.Env = []string{"PATH=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cairn-lab is not installed") || !strings.Contains(string(out), "make build") {
		t.Errorf("cairn lab without cairn-lab: %v, %q", err, out)
	}
}

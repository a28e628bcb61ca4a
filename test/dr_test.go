package test

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestDisasterRecoveryWalk walks the loss of the appliance as an
// administrator would, with a real Ceph RGW (Object Lock) and the
// simulated vCenter:
//
//  1. the appliance runs cairn serve with a backup job that replicates
//     after each backup (remote retention, --immutable-days); two
//     generations of two VMs reach the remote; a drill in a scratch
//     repository (verify --remote, restore-file --remote of a canary)
//     does not disturb the appliance's next replication;
//  2. cairn remote show --for-recovery names what to keep; those files
//     are copied to a "safe" and the appliance (repository, config, keys)
//     is deleted, keeping a stale copy of its repository for step 4;
//  3. a new appliance from the safe alone: init, remote add, points
//     --remote (every point, with its vm/config.json), restore vm
//     --remote to the vCenter, pull, then remote takeover and the old
//     serve config: each VM's next backup is incremental from the pulled
//     point (CBT), its replication uploads only the new points (the old
//     ones are there) and verify --remote finds nothing wrong;
//  4. split brain: the old appliance's stale repository replicates and
//     prunes the same remote: both refused, naming the new appliance and
//     the fix, and the remote keeps every point.
func TestDisasterRecoveryWalk(t *testing.T) {
	f := newRemoteFixture(t)
	sim := esxsimtest.Start(t, esxsim.Options{DVPortgroups: 1, VMs: restoreVMs()})
	vms := []string{"biosvm", "efivm"}
	rng := mrand.New(mrand.NewPCG(61, 62))
	dir := t.TempDir()
	canary := putCanary(t, sim, "efivm", dir)
	for _, vm := range vms {
		writeBlocks(t, sim, vm, 40, rng) // most of what the first replication uploads
	}
	bin := buildCairn(t)
	app, safe := filepath.Join(dir, "appliance"), filepath.Join(dir, "safe")
	etc, repo := filepath.Join(app, "etc"), filepath.Join(app, "repo")
	for _, d := range []string{etc, safe} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cred, key, vcCred, cfgFile := filepath.Join(etc, "s3.cred"), filepath.Join(etc, "offsite.key"), filepath.Join(etc, "vc.cred"), filepath.Join(etc, "cairn.yaml")
	s3cred, err := os.ReadFile(f.creds)
	if err != nil {
		t.Fatal(err)
	}
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	listen := serveFreeAddr(t)
	for file, data := range map[string][]byte{
		cred: s3cred, key: keyBytes, vcCred: []byte(sim.User + "\n" + sim.Password + "\n"),
		cfgFile: fmt.Appendf(nil, `repository: %s
listen: %s
vcenters:
  - name: sim
    url: %s
    credentials: %s
    thumbprint: %q
jobs:
  - name: nightly
    vcenter: sim
    vms: [biosvm, efivm]
    schedule: 1h
    transports: [file]
    retention: {keep_last: 5}
    replicate:
      remote: offsite
      after_backup: true
      retention: {keep_last: 10}
`, repo, listen, sim.URL.String(), vcCred, sim.Thumbprint),
	} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// 1. The appliance before the disaster.
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "remote", "add", "offsite", "--endpoint", f.c.Endpoint, "--bucket", f.bucket,
		"--credentials", cred, "--key-file", key, "--immutable-days", "1", "--pack-size", "1048576")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	api := serveAPI{base: "http://" + listen, repo: repo}
	var logs serveLogBuffer
	srv, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	firstUpload := waitReplicated(t, api, exited, &logs, 1, 0) // the run at start
	for i, vm := range vms {
		if i == 1 {
			// The drill (docs/remote.md): a scratch repository reads the
			// remote while the appliance works; it claims nothing, so the
			// appliance's next replication goes on.
			drill := filepath.Join(dir, "drill")
			mustCairn(t, "--repo", drill, "init")
			mustCairn(t, "--repo", drill, "remote", "add", "offsite", "--endpoint", f.c.Endpoint, "--bucket", f.bucket, "--credentials", cred, "--key-file", key)
			if out := mustCairn(t, "--repo", drill, "verify", "--remote", "offsite", "--sample", "50%"); !strings.Contains(out, "0 bad blocks, 0 bad objects") {
				t.Fatalf("drill verify --remote:\n%s", out)
			}
			out := filepath.Join(dir, "drill-canary")
			mustCairn(t, "--repo", drill, "restore-file", "--remote", "offsite", "--vm", "efivm", "--point", "latest", "--disk", "scsi0-0", "--part", "1", "/canary.txt", out)
			if b := readFile(t, out); b != canary {
				t.Fatalf("drill canary: %q", b)
			}
			if err := os.RemoveAll(drill); err != nil {
				t.Fatal(err)
			}
		}
		writeBlocks(t, sim, vm, 3, rng)
		resp, err := api.post("/api/v1/jobs", strings.NewReader(fmt.Sprintf(`{"vm":%q}`, vm)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("POST /api/v1/jobs %s: %s", vm, resp.Status)
		}
		waitReplicated(t, api, exited, &logs, 2+i, 0)
	}
	waitRemotePoints(t, api, exited, &logs, 4)

	// 2. What to keep offsite, then the disaster.
	sheet := mustCairn(t, "--repo", repo, "remote", "show", "offsite", "--for-recovery")
	var kept []string
	for _, m := range regexp.MustCompile(`(?m)\s(/\S+)\s+\(COPY`).FindAllStringSubmatch(sheet, -1) {
		kept = append(kept, m[1])
	}
	for _, want := range []string{cred, key, cfgFile, vcCred} {
		if !strings.Contains(strings.Join(kept, "\n"), want) {
			t.Fatalf("the recovery sheet does not say to keep %s:\n%s", want, sheet)
		}
	}
	for _, want := range []string{f.c.Endpoint, f.bucket, "block size:", "remote takeover offsite", "verify --remote offsite"} {
		if !strings.Contains(sheet, want) {
			t.Fatalf("the recovery sheet lacks %q:\n%s", want, sheet)
		}
	}
	for _, p := range kept {
		keepFile(t, p, filepath.Join(safe, filepath.Base(p)))
	}
	syscall.Kill(-srv.Process.Pid, syscall.SIGTERM)
	<-exited
	oldPts := listPoints(t, repo, "biosvm")
	stale := filepath.Join(dir, "stale-disk", "repo")
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", repo, filepath.Dir(stale)+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	if err := os.RemoveAll(app); err != nil {
		t.Fatal(err)
	}

	// 3. The new appliance: the safe's files back where the config names
	// them, a new repository at the same place.
	if err := os.MkdirAll(etc, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range kept {
		keepFile(t, filepath.Join(safe, filepath.Base(p)), p)
	}
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "remote", "add", "offsite", "--endpoint", f.c.Endpoint, "--bucket", f.bucket,
		"--credentials", cred, "--key-file", key, "--pack-size", "1048576")
	rpts := remotePoints(t, repo, "offsite")
	if len(rpts) != 4 {
		t.Fatalf("points --remote on the new appliance: %d, want 4", len(rpts))
	}
	for _, p := range rpts {
		if len(p.Attachments) == 0 {
			t.Fatalf("remote point %s %s has no vm/ attachments", p.VM, p.ID)
		}
	}
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	r := runCairn(t, env, "--repo", repo, "restore", "vm", "--remote", "offsite", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
		"--vm", "efivm", "--transport", backupd.WriteTransportNFC, "--name", "efivm-dr", "--network", "VM Network=DC0_DVPG0", "--json")
	if r.code != 0 {
		t.Fatalf("restore vm --remote: %s", r.stderr)
	}
	// A file and a disk image straight from the bucket (the drill's canary).
	got := filepath.Join(dir, "restored")
	mustCairn(t, "--repo", repo, "restore-file", "--remote", "offsite", "--vm", "efivm", "--point", "latest", "--disk", "scsi0-0", "--part", "1", "/canary.txt", got)
	if b := readFile(t, got); b != canary {
		t.Fatalf("restore-file --remote of the canary: %q, want %q", b, canary)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	var mountErr serveLogBuffer
	mcmd, mexited := serveStartChild(t, bin, &mountErr, "--repo", repo, "mount", "--remote", "offsite", mnt)
	viaMount := filepath.Join(mnt, "efivm", "latest", "fs", "scsi0-0", "p1", "canary.txt")
	serveWaitFor(t, "the remote mount", mexited, &mountErr, func() bool {
		b, err := os.ReadFile(viaMount)
		return err == nil && string(b) == canary
	})
	syscall.Kill(-mcmd.Process.Pid, syscall.SIGTERM)
	<-mexited
	mustCairn(t, "--repo", repo, "pull", "--remote", "offsite")
	checkRestored(t, repo, sim, "efivm", "efivm-dr")
	pulled := map[string]blockmap.Point{}
	for _, vm := range vms {
		pts := listPoints(t, repo, vm)
		if len(pts) != 2 {
			t.Fatalf("pulled %d points of %s, want 2", len(pts), vm)
		}
		pulled[vm] = pts[len(pts)-1]
	}
	if len(oldPts) != 2 || pulled["biosvm"].ID != oldPts[1].ID {
		t.Fatalf("the newest pulled point of biosvm is %s, the old appliance's %v", pulled["biosvm"].ID, oldPts)
	}

	// The remote is still the old appliance's: the new one must take it
	// over before it replicates.
	res := runCairn(t, nil, "--repo", repo, "replicate", "--remote", "offsite")
	if res.code == 0 || !strings.Contains(res.stderr, "written by another appliance") || !strings.Contains(res.stderr, "cairn remote takeover offsite") {
		t.Fatalf("replicate before takeover: exit %d\n%s", res.code, res.stderr)
	}
	if out := mustCairn(t, "--repo", repo, "remote", "takeover", "offsite"); !strings.Contains(out, "in place of repository "+repo) {
		t.Fatalf("takeover said: %s", out)
	}
	for _, vm := range vms {
		writeBlocks(t, sim, vm, 1, rng)
	}
	logs = serveLogBuffer{}
	srv, exited = serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	up := waitReplicated(t, api, exited, &logs, 1, 4)
	waitRemotePoints(t, api, exited, &logs, 6)
	t.Logf("uploaded: the old appliance's first replication %d bytes, the new appliance's first %d", firstUpload, up)
	if up*4 > firstUpload {
		t.Errorf("the new appliance's first replication uploaded %d bytes, the old appliance's first %d: it re-uploaded what the remote holds", up, firstUpload)
	}
	// The pulled points count as replicated: the new points' replication
	// reads only their changed blocks (one 64 KiB block per data disk
	// here), not each VM's whole point again.
	var rs struct {
		Replications []serve.ReplicationRecord `json:"replications"`
	}
	if !api.getJSON("/api/v1/replications", &rs) || len(rs.Replications) == 0 {
		t.Fatal("no replication record after the resumed replication")
	}
	read := rs.Replications[len(rs.Replications)-1].BytesRead
	t.Logf("read locally: the new appliance's first replication %d bytes", read)
	if read == 0 || read > 1<<20 {
		t.Errorf("the new appliance's first replication read %d bytes locally for a few changed 64 KiB blocks: it re-read the pulled points", read)
	}
	syscall.Kill(-srv.Process.Pid, syscall.SIGTERM)
	<-exited
	for _, vm := range vms {
		pts := listPoints(t, repo, vm)
		last := pts[len(pts)-1]
		if len(pts) != 3 || last.ID == pulled[vm].ID {
			t.Fatalf("%s after the resumed backup: %d points", vm, len(pts))
		}
		for _, d := range last.Disks {
			if d.Full {
				t.Errorf("%s disk %s: the first backup after the pull was full (%s), want incremental from the pulled point (CBT)", vm, d.Name, d.FullReason)
			}
		}
	}
	if out := mustCairn(t, "--repo", repo, "verify", "--remote", "offsite"); !strings.Contains(out, "6 points") || !strings.Contains(out, "0 bad blocks, 0 bad objects") {
		t.Fatalf("verify --remote after the resumed replication:\n%s", out)
	}

	// 4. Split brain: the old appliance's repository, from a stale disk.
	newID := strings.TrimSpace(readFile(t, filepath.Join(repo, "remotes", "writer-id")))
	before := f.objectCount(t)
	for _, args := range [][]string{
		{"replicate", "--remote", "offsite"},
		{"prune", "--remote", "offsite", "--keep-last", "1"},
	} {
		res := runCairn(t, nil, append([]string{"--repo", stale}, args...)...)
		if res.code == 0 || !strings.Contains(res.stderr, newID) || !strings.Contains(res.stderr, "cairn remote takeover offsite") {
			t.Fatalf("the stale appliance's %s: exit %d\n%s", args[0], res.code, res.stderr)
		}
	}
	if after := f.objectCount(t); after != before {
		t.Fatalf("the refused stale appliance changed the bucket: %d objects, then %d", before, after)
	}
	if n := len(remotePoints(t, repo, "offsite")); n != 6 {
		t.Fatalf("the remote holds %d points after the stale appliance's attempts, want 6", n)
	}
}

// waitReplicated waits until every backup and replication run of serve
// has ended, at least n replications, none failed; it returns the bytes the newest
// uploaded. present > 0 also wants that many points found already there.
func waitReplicated(t *testing.T, api serveAPI, exited <-chan error, logs *serveLogBuffer, n, present int) int64 {
	t.Helper()
	var last serve.ReplicationRecord
	serveWaitFor(t, "the replications", exited, logs, func() bool {
		var rs struct {
			Replications []serve.ReplicationRecord `json:"replications"`
		}
		var jobs serve.JobsResponse
		if !api.getJSON("/api/v1/replications", &rs) || !api.getJSON("/api/v1/jobs", &jobs) || len(rs.Replications) < n {
			return false
		}
		for _, r := range jobs.Runs {
			if r.State == serve.StateRunning || r.State == serve.StateQueued {
				return false
			}
			if r.State == serve.StateFailed {
				t.Fatalf("backup run failed: %s\n%s", r.Error, logs.String())
			}
		}
		sum := 0
		for _, r := range rs.Replications {
			if r.State == serve.StateFailed {
				t.Fatalf("replication failed: %s\n%s", r.Error, logs.String())
			}
			if r.State != serve.StateOK {
				return false
			}
			sum += r.Present
		}
		last = rs.Replications[len(rs.Replications)-1]
		return sum >= present
	})
	return last.BytesUploaded
}

// waitRemotePoints waits until serve's API lists n points on the remote.
func waitRemotePoints(t *testing.T, api serveAPI, exited <-chan error, logs *serveLogBuffer, n int) {
	t.Helper()
	serveWaitFor(t, fmt.Sprintf("%d remote points", n), exited, logs, func() bool {
		var out struct {
			Points []blockmap.Point `json:"points"`
		}
		return api.getJSON("/api/v1/remotes/offsite/points", &out) && len(out.Points) == n
	})
}

// checkRestored compares the disks of a VM restored to the simulator with
// the repository's newest point of vm.
func checkRestored(t *testing.T, repoDir string, sim *esxsim.Sim, vm, restored string) {
	t.Helper()
	rp, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	p := latestPoint(t, rp, vm)
	files, err := sim.DiskLocalPaths(restored)
	if err != nil || len(files) != len(p.Disks) {
		t.Fatalf("%s: disk files %v %v, point has %d disks", restored, files, err, len(p.Disks))
	}
	for _, d := range p.Disks {
		sameAsPoint(t, rp, p, d.Name, files[d.Name])
	}
}

// keepFile copies a file, private (0600) as cairn wants its keys.
func keepFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// putCanary writes a GPT disk with an ext4 partition holding canary.txt
// over the first disk of vm, and returns the canary's text.
func putCanary(t *testing.T, sim *esxsim.Sim, vm, dir string) string {
	t.Helper()
	testutil.RequireTools(t, "mkfs.ext4", "sgdisk")
	testutil.RequireFUSE(t)
	src := filepath.Join(dir, "canary-src")
	text := "the drill's canary, written before the disaster\n"
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "canary.txt"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, disk := filepath.Join(dir, "canary.fs"), filepath.Join(dir, "canary.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", src, fs, "4M")
	makeImage(t, disk, 16<<20)
	sh(t, "sgdisk", "-n", "1:2048:10239", disk)
	writeAt(t, disk, fs, mib)
	data, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	g, err := sim.Guest(vm)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WriteAt(0, data, 0); err != nil {
		t.Fatal(err)
	}
	return text
}

// writeBlocks writes n random 64 KiB blocks at random places of every
// disk of vm but the canary's (efivm's first).
func writeBlocks(t *testing.T, sim *esxsim.Sim, vm string, n int, rng *mrand.Rand) {
	t.Helper()
	g, err := sim.Guest(vm)
	if err != nil {
		t.Fatal(err)
	}
	disks, err := sim.Disks(vm)
	if err != nil {
		t.Fatal(err)
	}
	for i := range disks {
		if vm == "efivm" && i == 0 {
			continue
		}
		if _, err := g.WriteRandomBlocks(i, n, 64<<10, rng); err != nil {
			t.Fatal(err)
		}
	}
}

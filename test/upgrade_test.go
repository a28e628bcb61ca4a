package test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// upgradeOldCommit is the older cairn TestUpgradeFromOlderCairn upgrades
// from: main at the end of session 7 (stop 19), with offsite remotes of
// manifest format 1, boot checks and serve jobs, before serve-schedule.json,
// serve-notify.json, format-2 manifests and points recording placement.
const upgradeOldCommit = "25129d637ba342541d2e576e8719947f4358bb40"

// oldCairnCache keeps built old binaries between runs, keyed by commit.
const oldCairnCache = "/var/tmp/cairn-fixtures/cairn-old"

// buildOldCairn returns a cairn built from commit (cached under
// oldCairnCache). Without the commit in the clone's history or without
// the Go module proxy the test skips, and fails under CI=true.
func buildOldCairn(t *testing.T, commit string) string {
	t.Helper()
	bin := filepath.Join(oldCairnCache, commit, "cairn")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	testutil.RequireTools(t, "git", "tar", "go")
	unavailable := func(format string, args ...any) {
		t.Helper()
		if testutil.InCI() {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		unavailable("old cairn %s: not in this clone's git history (a full clone has it): %v %s", commit[:7], err, out)
	}
	if err := os.MkdirAll(oldCairnCache, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(oldCairnCache, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("old cairn %s: git archive: %v %s", commit[:7], err, out)
	}
	build := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-trimpath", "-o", filepath.Join(tmp, "cairn"), "./cmd/cairn")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	t.Logf("building cairn %s (once per machine, cached in %s)", commit[:7], oldCairnCache)
	if out, err := build.CombinedOutput(); err != nil {
		unavailable("old cairn %s: go build (needs the Go module proxy for its modules): %v\n%s", commit[:7], err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, "cairn"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// upgradeRun runs bin (any cairn binary) with args.
func upgradeRun(t *testing.T, bin string, args ...string) cairnResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	res := cairnResult{stdout: so.String(), stderr: se.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s %v: %v", bin, args, err)
		}
		res.code = ee.ExitCode()
	}
	return res
}

func upgradeMust(t *testing.T, bin string, args ...string) string {
	t.Helper()
	res := upgradeRun(t, bin, args...)
	if res.code != 0 {
		t.Fatalf("%s %s: exit %d:\n%s%s", filepath.Base(filepath.Dir(bin)), strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// upgradePoints is `cairn points --json` (every cairn since the old commit
// prints this shape), or with --remote a flat list of points.
type upgradePoints struct {
	VMs []struct {
		Name   string           `json:"name"`
		Points []blockmap.Point `json:"points"`
	} `json:"vms"`
	Points []blockmap.Point `json:"points"`
}

func upgradePointsOf(t *testing.T, bin, repo string, extra ...string) map[string][]blockmap.Point {
	t.Helper()
	var out upgradePoints
	if err := json.Unmarshal([]byte(upgradeMust(t, bin, append([]string{"--repo", repo, "points", "--json"}, extra...)...)), &out); err != nil {
		t.Fatal(err)
	}
	m := map[string][]blockmap.Point{}
	for _, v := range out.VMs {
		m[v.Name] = v.Points
	}
	for _, p := range out.Points {
		m[p.VM] = append(m[p.VM], p)
	}
	return m
}

// upgradePointKeys lists "vm id gen time" of every point, for comparing listings.
func upgradePointKeys(m map[string][]blockmap.Point) []string {
	var out []string
	for vm, pts := range m {
		for _, p := range pts {
			out = append(out, fmt.Sprintf("%s %s %d %s", vm, p.ID, p.Gen, p.Time.UTC().Format(time.RFC3339Nano)))
		}
	}
	sort.Strings(out)
	return out
}

// upgradeExt4 makes a 32 MiB ext4 image holding etc/motd = motd and a
// fixed data file.
func upgradeExt4(t *testing.T, dir, name, motd string, data []byte) string {
	t.Helper()
	src := filepath.Join(dir, name+".src")
	for _, d := range []string{"etc", "data"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "motd"), []byte(motd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "data", "blob"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, name)
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	// Fixed UUID and hash seed: the images of two points differ only
	// where their files do.
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-U", "6a4d5c4e-0d6b-4f63-9d0a-1f1ad1f1e5a1", "-E", "hash_seed=2b6f3c1e-5d1a-4b7e-8a3c-9e0f1d2c3b4a", "-d", src, img)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	return img
}

func upgradeSameFile(t *testing.T, got, want, what string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s: %s differs from %s", what, got, want)
	}
}

// TestUpgradeFromOlderCairn upgrades an appliance in place: an older cairn
// (upgradeOldCommit, built from this clone's history) makes a repository
// with imported points, a prune, an offsite remote it replicated to, and
// scheduled vSphere backups (with retention and replication) from its own
// `cairn serve`; then the current cairn lists the same points, verifies,
// exports the same bytes, restores files (also from the remote), goes on
// incrementally (import, and serve with the old config file continuing CBT
// from the old point), replicates without sending again what the remote
// has, pulls the remote into a new repository, lists the old job records,
// and checks the old config. The old cairn then still reads what the
// current one wrote, until a point needs repository format 2: then it
// refuses the repository by name instead of reading it wrong.
func TestUpgradeFromOlderCairn(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4")
	old := buildOldCairn(t, upgradeOldCommit)
	cur := buildCairn(t)
	store := s3test.Versity(t)
	dir := t.TempDir()

	// The sources of three imported points of web01: an ext4 disk whose
	// motd changes and a raw disk that does not.
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	raw := filepath.Join(dir, "sdb.img")
	rawData := make([]byte, 4<<20)
	rand.Read(rawData[:1<<20])
	if err := os.WriteFile(raw, rawData, 0o644); err != nil {
		t.Fatal(err)
	}
	var sda []string
	for i := 1; i <= 4; i++ {
		sda = append(sda, upgradeExt4(t, dir, fmt.Sprintf("sda-%d.img", i), fmt.Sprintf("motd of point %d\n", i), blob))
	}

	// The lab (a simulated vCenter, independent of the cairn that backs it
	// up) and the old cairn's repository.
	lb := startServeLab(t, cur, 1, "2s")
	repo := filepath.Join(dir, "repo")
	upgradeMust(t, old, "--repo", repo, "init")
	for i := 0; i < 3; i++ {
		upgradeMust(t, old, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", "--disk", "sdb",
			"--time", fmt.Sprintf("2026-11-0%dT01:00:00Z", i+1), sda[i], raw)
	}
	upgradeMust(t, old, "--repo", repo, "prune", "--vm", "web01", "--keep-last", "2")

	creds, key := filepath.Join(dir, "creds"), filepath.Join(dir, "key")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", store.AccessKey, store.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	k := make([]byte, 32)
	rand.Read(k)
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	bucket := s3test.NewBucketName()
	remoteArgs := []string{"off1", "--endpoint", store.Endpoint, "--bucket", bucket, "--region", "us-east-1", "--credentials", creds, "--key-file", key}
	upgradeMust(t, old, append([]string{"--repo", repo, "remote", "add"}, remoteArgs...)...)
	upgradeMust(t, old, "--repo", repo, "remote", "init", "off1")
	upgradeMust(t, old, "--repo", repo, "replicate", "--remote", "off1")

	// The old serve backs the lab's VM up on its schedule, keeps 3 points
	// and replicates after each backup.
	cfg := bytes.Replace(lb.raw, []byte("repository: "+lb.cfg.Repository), []byte("repository: "+repo), 1)
	cfg = bytes.Replace(cfg, []byte("keep_last: 20"), []byte("keep_last: 3"), 1)
	cfg = bytes.Replace(cfg, []byte("    verify_against_source_every: 10\n"),
		[]byte("    verify_against_source_every: 10\n    replicate:\n      remote: off1\n      after_backup: true\n      retention: {keep_last: 5}\n"), 1)
	if !bytes.Contains(cfg, []byte("repository: "+repo)) || !bytes.Contains(cfg, []byte("remote: off1")) {
		t.Fatalf("the lab's cairn.yaml changed shape:\n%s", lb.raw)
	}
	cfgFile := lb.writeConfig(t, cfg)
	labPoints := func(bin string) []blockmap.Point { return upgradePointsOf(t, bin, repo)["lab-vm-1"] }
	runServe := func(bin string, until func() bool, what string) {
		t.Helper()
		var logs serveLogBuffer
		srv, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
		serveWaitFor(t, what, exited, &logs, until)
		if bin == cur {
			if res := upgradeRun(t, cur, "--repo", repo, "status"); res.code != 0 || !strings.Contains(res.stdout, "lab-vm-1") {
				t.Errorf("status while the current serve runs: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
		}
		syscall.Kill(srv.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("serve did not stop after SIGTERM:\n%s", logs.String())
		}
	}
	runServe(old, func() bool { return len(labPoints(old)) >= 2 }, "two points of lab-vm-1 by the old serve")

	oldPts := upgradePointsOf(t, old, repo)
	oldJobs := upgradeJobIDs(t, repo)
	oldRemote := upgradePointsOf(t, old, repo, "--remote", "off1")
	if len(oldPts["web01"]) != 2 || len(oldRemote["web01"]) != 2 || len(oldJobs) == 0 {
		t.Fatalf("the old cairn's repository: points %v, remote %v, jobs %v", upgradePointKeys(oldPts), upgradePointKeys(oldRemote), oldJobs)
	}

	// The current cairn over the old repository.
	if got, want := upgradePointKeys(upgradePointsOf(t, cur, repo)), upgradePointKeys(oldPts); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("points after the upgrade:\n%s\nthe old cairn listed:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	upgradeMust(t, cur, "--repo", repo, "verify")
	for i, p := range oldPts["web01"] {
		out := filepath.Join(dir, "export-"+p.ID)
		upgradeMust(t, cur, "--repo", repo, "export", "--vm", "web01", "--point", p.ID, "--disk", "sda", out)
		upgradeSameFile(t, out, sda[i+1], "sda of "+p.ID)
		upgradeMust(t, cur, "--repo", repo, "export", "--vm", "web01", "--point", p.ID, "--disk", "sdb", out+"-sdb")
		upgradeSameFile(t, out+"-sdb", raw, "sdb of "+p.ID)
	}
	// The current mount shows the old points (and the old remote's) with
	// the same disks and files.
	for _, m := range []struct{ name, flag string }{{"mount", ""}, {"mount --remote", "--remote=off1"}} {
		mnt := filepath.Join(dir, "mnt-"+strings.ReplaceAll(m.name, " ", ""))
		var flags []string
		if m.flag != "" {
			flags = append(flags, m.flag)
		}
		_, stop := startMountPID(t, cur, repo, mnt, flags...)
		for i, p := range oldPts["web01"] {
			upgradeSameFile(t, filepath.Join(mnt, "web01", p.ID, "disks", "sda.img"), sda[i+1], m.name+" sda.img of "+p.ID)
			upgradeSameFile(t, filepath.Join(mnt, "web01", p.ID, "disks", "sdb.img"), raw, m.name+" sdb.img of "+p.ID)
			got, err := os.ReadFile(filepath.Join(mnt, "web01", p.ID, "fs", "sda", "whole", "etc", "motd"))
			if want := fmt.Sprintf("motd of point %d\n", i+2); err != nil || string(got) != want {
				t.Errorf("%s: etc/motd of %s: %q %v, want %q", m.name, p.ID, got, err, want)
			}
		}
		stop()
	}
	motd := func(extra ...string) string {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "motd")
		upgradeMust(t, cur, append(append([]string{"--repo", repo, "restore-file", "--vm", "web01"}, extra...), "--disk", "sda", "--part", "whole", "/etc/motd", dst)...)
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := motd("--point", oldPts["web01"][0].ID); got != "motd of point 2\n" {
		t.Errorf("restore-file from the old point: %q", got)
	}
	if got := motd("--point", oldPts["web01"][0].ID, "--remote", "off1"); got != "motd of point 2\n" {
		t.Errorf("restore-file from the old remote point: %q", got)
	}

	// The next import stores only what changed since the old point.
	upgradeMust(t, cur, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", "--disk", "sdb", sda[3], raw)
	web := upgradePointsOf(t, cur, repo)["web01"]
	last := web[len(web)-1]
	for _, d := range last.Disks {
		if d.StoredBytes > 1<<20 {
			t.Errorf("import after the upgrade stored %d bytes of %s (the old point has the rest)", d.StoredBytes, d.Name)
		}
	}

	// serve with the old config file: it starts, backs up incrementally
	// (CBT since the old serve's point), and status answers.
	upgradeMust(t, cur, "config", "check", cfgFile)
	before := len(labPoints(cur))
	runServe(cur, func() bool { return len(labPoints(cur)) > before }, "a point of lab-vm-1 by the current serve")
	lab := labPoints(cur)
	newest := lab[len(lab)-1]
	for _, d := range newest.Disks {
		if d.Full {
			t.Errorf("the current serve's first backup of lab-vm-1 read %s in full (%s), not from the old point's CBT", d.Name, d.FullReason)
		}
	}
	jobs := upgradeJobIDs(t, repo)
	var listed []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(upgradeMust(t, cur, "--repo", repo, "jobs", "--json", "--history")), &listed); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, j := range listed {
		have[j.ID] = true
	}
	for _, id := range oldJobs {
		if !have[id] {
			t.Errorf("cairn jobs does not list the old cairn's job %s", id)
		}
	}
	if len(jobs) <= len(oldJobs) {
		t.Errorf("no new job records after the upgrade: %d, were %d", len(jobs), len(oldJobs))
	}

	// Replication goes on: what the remote has is not sent again.
	var rep struct {
		Stats struct {
			Present   []blockmap.Point `json:"present"`
			BlocksNew int64            `json:"blocks_new"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(upgradeMust(t, cur, "--repo", repo, "replicate", "--remote", "off1", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, p := range rep.Stats.Present {
		present[p.VM+" "+p.ID] = true
	}
	for _, p := range oldRemote["web01"] {
		if !present["web01 "+p.ID] {
			t.Errorf("replicate after the upgrade did not find the old cairn's remote point web01 %s there", p.ID)
		}
	}
	if rep.Stats.BlocksNew > 32 {
		t.Errorf("replicate after the upgrade sent %d new blocks (one import of a changed motd needs a few)", rep.Stats.BlocksNew)
	}
	upgradeMust(t, cur, "--repo", repo, "verify", "--remote", "off1")
	remoteNow := upgradePointsOf(t, cur, repo, "--remote", "off1")
	for _, p := range oldRemote["web01"] {
		found := false
		for _, q := range remoteNow["web01"] {
			found = found || q.ID == p.ID
		}
		if !found {
			t.Errorf("the old remote point web01 %s is gone from points --remote", p.ID)
		}
	}

	// The remote pulled into a new repository gives the same bytes.
	pulled := filepath.Join(dir, "pulled")
	upgradeMust(t, cur, "--repo", pulled, "init")
	upgradeMust(t, cur, append([]string{"--repo", pulled, "remote", "add"}, remoteArgs...)...)
	upgradeMust(t, cur, "--repo", pulled, "pull", "--remote", "off1", "--vm", "web01")
	for i, p := range oldPts["web01"] {
		out := filepath.Join(dir, "pulled-"+p.ID)
		upgradeMust(t, cur, "--repo", pulled, "export", "--vm", "web01", "--point", p.ID, "--disk", "sda", out)
		upgradeSameFile(t, out, sda[i+1], "pulled sda of "+p.ID)
	}

	upgradeMust(t, cur, "--repo", repo, "prune", "--vm", "web01", "--keep-last", "2")
	upgradeMust(t, cur, "--repo", repo, "verify")

	// Downgrade: the old cairn reads what the current one wrote while the
	// repository stays at format 1 ...
	if got, want := upgradePointKeys(upgradePointsOf(t, old, repo)), upgradePointKeys(upgradePointsOf(t, cur, repo)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the old cairn lists other points than the current one:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	upgradeMust(t, old, "--repo", repo, "verify")
	// ... and refuses it once a disk came back after a point without it
	// (format 2), naming the format, rather than exporting wrong bytes.
	upgradeMust(t, cur, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", sda[3])
	upgradeMust(t, cur, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", "--disk", "sdb", sda[3], raw)
	res := upgradeRun(t, old, "--repo", repo, "points")
	if res.code == 0 || !strings.Contains(res.stderr, "repository format 2") {
		t.Errorf("the old cairn on a format-2 repository: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	upgradeMust(t, cur, "--repo", repo, "verify")
	out := filepath.Join(dir, "back-sdb")
	upgradeMust(t, cur, "--repo", repo, "export", "--vm", "web01", "--disk", "sdb", out)
	upgradeSameFile(t, out, raw, "sdb back after a point without it")
}

// upgradeJobIDs lists the ids in the repository's job log.
func upgradeJobIDs(t *testing.T, repo string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, "jobs", "jobs.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, line := range bytes.Split(data, []byte("\n")) {
		var j struct {
			ID string `json:"id"`
		}
		if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &j) != nil || j.ID == "" || seen[j.ID] {
			continue
		}
		seen[j.ID] = true
		out = append(out, j.ID)
	}
	return out
}

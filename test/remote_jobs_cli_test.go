package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRemoteJobsCLI: cairn jobs lists imports, replicate runs (a failed
// one with its error) and pulls beside backups, with the remote, the VMs
// and the bytes moved, in the table and in --json; a record written
// before these kinds existed still lists. A pull on a terminal draws its
// progress on stderr, and says per point what it moved and how long it
// took.
func TestRemoteJobsCLI(t *testing.T) { s3test.Each(t, testRemoteJobsCLI) }

func testRemoteJobsCLI(t *testing.T, eng s3test.Engine) {
	testutil.RequireTools(t, "script")
	f := newRemoteFixtureOn(t, eng)
	dir, repo := repoWithOnePoint(t, 3<<20, 9)
	old := `{"id":"20261101T010000Z-0ld0ld","vm":"legacy","start":"2026-11-01T01:00:00Z","end":"2026-11-01T01:05:00Z","state":"ok","point":"2026-11-01T01-00-00Z","bytes_read":1048576,"bytes_written":524288}` + "\n"
	lf, err := os.OpenFile(filepath.Join(repo, "jobs", "jobs.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lf.WriteString(old); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	f.add(t, repo, "offsite")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")
	mustCairn(t, "--repo", repo, "verify", "--remote", "offsite")
	badCreds := filepath.Join(dir, "badcreds")
	if err := os.WriteFile(badCreds, []byte("aws_access_key_id = "+eng.AccessKey+"\naws_secret_access_key = nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "remote", "add", "denied", "--endpoint", eng.Endpoint, "--bucket", f.bucket, "--credentials", badCreds, "--passphrase-file", f.pass)
	if res := runCairn(t, nil, "--repo", repo, "replicate", "--remote", "denied"); res.code == 0 {
		t.Fatalf("replicate with wrong credentials succeeded: %s", res.stdout)
	}

	jobs := jobsJSON(t, repo)
	byKind := map[string][]backupd.JobRecord{}
	for _, j := range jobs {
		byKind[j.Kind] = append(byKind[j.Kind], j)
	}
	if im := byKind[backupd.JobImport]; len(im) != 1 || im[0].VM != "a" || im[0].State != backupd.JobOK || im[0].Point == "" || im[0].BytesWritten < 3<<20 || im[0].BytesRead < 3<<20 {
		t.Errorf("import records: %+v", im)
	}
	var ok, failed *backupd.JobRecord
	for i, j := range byKind[backupd.JobReplicate] {
		switch j.Remote {
		case "offsite":
			ok = &byKind[backupd.JobReplicate][i]
		case "denied":
			failed = &byKind[backupd.JobReplicate][i]
		}
	}
	if ok == nil || ok.State != backupd.JobOK || ok.VM != "a" || len(ok.VMs) != 1 || ok.Points != 1 || ok.BytesUploaded < 3<<20 || ok.BytesRead < 3<<20 || ok.End.IsZero() {
		t.Errorf("replicate record: %+v", ok)
	}
	if failed == nil || failed.State != backupd.JobFailed || !strings.Contains(failed.Error, "access denied") || failed.End.IsZero() {
		t.Errorf("failed replicate record: %+v", failed)
	}
	if v := byKind[backupd.JobVerifyRemote]; len(v) != 1 || v[0].Remote != "offsite" || v[0].State != backupd.JobOK || v[0].End.IsZero() {
		t.Errorf("verify --remote records: %+v", v)
	}
	if lg := byKind[""]; len(lg) != 1 || lg[0].VM != "legacy" || lg[0].BytesWritten != 524288 {
		t.Errorf("old record: %+v", lg)
	}
	out := mustCairn(t, "--repo", repo, "jobs")
	for _, want := range []string{"a (import)", "a (replicate to offsite)", "a (replicate to denied)", "- (verify of offsite)", "access denied", "legacy", "1 point copied, 0 there", " up"} {
		if !strings.Contains(out, want) {
			t.Errorf("cairn jobs lacks %q:\n%s", want, out)
		}
	}

	// Disaster recovery on a new machine, on a terminal.
	repo2 := filepath.Join(dir, "rebuilt")
	mustCairn(t, "--repo", repo2, "init")
	f.add(t, repo2, "offsite")
	cmd := exec.Command("script", "-qec", buildCairn(t)+" --repo "+repo2+" pull --remote offsite", "/dev/null")
	tty, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pull on a terminal: %v\n%s", err, tty)
	}
	for _, want := range []string{"a/d0", "[#", "100.0%", "pulled a ", "downloaded", "stored in "} {
		if !strings.Contains(string(tty), want) {
			t.Errorf("pull on a terminal lacks %q:\n%q", want, tty)
		}
	}
	// Not on a terminal: no progress drawn, the per-point line stays.
	mustCairn(t, "--repo", repo2, "forget", "--vm", "a", "--point", "latest")
	res := runCairn(t, nil, "--repo", repo2, "pull", "--remote", "offsite")
	if res.code != 0 || strings.Contains(res.stderr, "[#") || !strings.Contains(res.stdout, "downloaded") {
		t.Errorf("pull off a terminal: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	var pulls []backupd.JobRecord
	for _, j := range jobsJSON(t, repo2) {
		if j.Kind == backupd.JobPull {
			pulls = append(pulls, j)
		}
	}
	if len(pulls) != 2 {
		t.Fatalf("pull records: %+v", pulls)
	}
	for _, p := range pulls {
		if p.State != backupd.JobOK || p.Remote != "offsite" || p.VM != "a" || p.Points != 1 || p.BytesDownloaded < 3<<20 || p.BytesWritten < 3<<20 {
			t.Errorf("pull record: %+v", p)
		}
	}
	if out := mustCairn(t, "--repo", repo2, "jobs"); !strings.Contains(out, "a (pull from offsite)") || !strings.Contains(out, " down") {
		t.Errorf("cairn jobs after pulls:\n%s", out)
	}
}

func jobsJSON(t *testing.T, repo string) []backupd.JobRecord {
	t.Helper()
	var jobs []backupd.JobRecord
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "jobs", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	return jobs
}

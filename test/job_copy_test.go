package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
)

// TestCopiedRepositoryJobInterrupted: a copy of a repository (cp -a)
// taken while an import into it runs carries the import's running record
// along; in the copy that job is interrupted (its writer runs on the
// original, not there), while the original still shows it running. The
// copy showed it running until the original's process ended.
func TestCopiedRepositoryJobInterrupted(t *testing.T) {
	repo := cliRepo(t)
	startSlowImport(t, repo)
	// cp -a of a repository a writer is using may meet a file the writer
	// removes meanwhile (the index's write-ahead log, when it rotates):
	// an administrator would copy again, and so does the test.
	cp := filepath.Join(t.TempDir(), "copy")
	for try := 1; ; try++ {
		out, err := exec.Command("cp", "-a", repo, cp).CombinedOutput()
		if err == nil {
			break
		}
		if try == 10 || !strings.Contains(string(out), "No such file or directory") {
			t.Fatalf("cp -a: %v: %s", err, out)
		}
		if err := os.RemoveAll(cp); err != nil {
			t.Fatal(err)
		}
	}
	importJob := func(repo string) backupd.JobRecord {
		t.Helper()
		var jobs []backupd.JobRecord
		if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "jobs", "--json")), &jobs); err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.Kind == backupd.JobImport {
				return j
			}
		}
		t.Fatalf("no import job in %s: %+v", repo, jobs)
		return backupd.JobRecord{}
	}
	if j := importJob(cp); j.State != backupd.JobInterrupted {
		t.Errorf("the copy shows the original's import as %q, want %q", j.State, backupd.JobInterrupted)
	}
	if table := mustCairn(t, "--repo", cp, "jobs"); !strings.Contains(table, " interrupted ") {
		t.Errorf("cairn jobs of the copy:\n%s\nwant the import interrupted", table)
	}
	if j := importJob(repo); j.State != backupd.JobRunning {
		t.Errorf("the original shows its running import as %q, want %q", j.State, backupd.JobRunning)
	}
}

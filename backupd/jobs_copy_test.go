package backupd

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestJobLogCopiedRunning: a running record of a live process is running
// in its repository and interrupted in a copy (cp -a) of it; a record of
// another host (a repository on NFS: each client numbers its mount's
// device itself) is running while the directory's inode is the
// record's, and interrupted in a copy.
func TestJobLogCopiedRunning(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	log := NewJobLog(repo)
	if err := log.Append(JobRecord{ID: "here", VM: "web", State: JobRunning}); err != nil {
		t.Fatal(err)
	}
	dev, ino := dirIdentity(repo)
	if err := log.Append(JobRecord{ID: "nfs", VM: "db", State: JobRunning, Host: "other-host.invalid", PID: 1, RepoDev: dev + 1, RepoIno: ino}); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", repo, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	for _, tc := range []struct {
		dir              string
		wantHere, wantNF string
	}{
		{repo, JobRunning, JobRunning},
		{cp, JobInterrupted, JobInterrupted},
	} {
		jobs, err := NewJobLog(tc.dir).List()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, j := range jobs {
			got[j.ID] = j.State
		}
		if got["here"] != tc.wantHere || got["nfs"] != tc.wantNF {
			t.Errorf("%s: states %v, want here %s, nfs %s", tc.dir, got, tc.wantHere, tc.wantNF)
		}
	}
}

package test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// documentedRepoPaths reads the table under "## Files" of
// docs/repository.md: every code span of a row's first cell is a path
// pattern (<x> one path element, * any text within one, a trailing /
// a directory).
func documentedRepoPaths(t *testing.T) []*regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "repository.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Files\n")
	if !ok {
		t.Fatal("docs/repository.md has no \"## Files\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	span := regexp.MustCompile("`([^`]+)`")
	placeholder := regexp.MustCompile(`<[^>]+>`)
	var pats []*regexp.Regexp
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `") || len(cells) < 3 {
			continue
		}
		for _, m := range span.FindAllStringSubmatch(cells[1], -1) {
			p := strings.TrimSuffix(m[1], "/")
			var re strings.Builder
			for i, part := range placeholder.Split(p, -1) {
				if i > 0 {
					re.WriteString(`[^/]+`)
				}
				re.WriteString(strings.ReplaceAll(regexp.QuoteMeta(part), `\*`, `[^/]*`))
			}
			pats = append(pats, regexp.MustCompile("^"+re.String()+"$"))
		}
	}
	if len(pats) < 20 {
		t.Fatalf("docs/repository.md's file table gave %d paths; is the table still there?", len(pats))
	}
	return pats
}

// TestRepositoryFilesDocumented runs what writes into a repository —
// init, imports, prune, forget, verify, remote add, a vSphere backup job, a writer
// session left open, `cairn serve` and a boot-check record — and fails
// on any file or directory under the repository that the table of
// docs/repository.md does not name, so the document cannot fall behind.
func TestRepositoryFilesDocumented(t *testing.T) {
	pats := documentedRepoPaths(t)
	dir := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", dir, "init")
	src := filepath.Join(t.TempDir(), "disk.img")
	makeImage(t, src, 4<<20)
	writeRandom(t, src, 0, 1<<20, 1)
	mustCairn(t, "--repo", dir, "import", "--vm", "imp", "--disk", "d0", src)
	writeRandom(t, src, 2<<20, 256<<10, 2)
	mustCairn(t, "--repo", dir, "import", "--vm", "imp", "--disk", "d0", src)
	mustCairn(t, "--repo", dir, "import", "--vm", "imp", "--disk", "d0", src)
	mustCairn(t, "--repo", dir, "forget", "--vm", "imp", "--point", "latest")
	mustCairn(t, "--repo", dir, "prune", "--keep-last", "1")
	mustCairn(t, "--repo", dir, "verify")
	// A remote's registration (remote add does not reach the store).
	secrets := t.TempDir()
	creds, key := filepath.Join(secrets, "creds"), filepath.Join(secrets, "key")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id=a\naws_secret_access_key=b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", dir, "remote", "add", "--endpoint", "http://127.0.0.1:1", "--bucket", "cairn-files", "--credentials", creds, "--key-file", key, "off1")

	// A vSphere backup job and cairn serve.
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 2 << 20}}}}})
	g, _ := sim.Guest("web-1")
	if err := g.WriteRandom(0, 0, 1<<20, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	res, err := backupd.BackupVM(ctx, repo, connectSim(t, sim), "web-1", backupd.JobOptions{Transports: []string{"file"}})
	if err != nil {
		t.Fatal(err)
	}
	runServeBriefly(t, sim, dir)

	// A boot check's record, through its writer.
	work := t.TempDir()
	shot, serial := filepath.Join(work, boot.ScreenshotFile), filepath.Join(work, boot.SerialFile)
	for _, f := range []string{shot, serial} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := boot.SaveResult(dir, "web-1", res.PointID, boot.Result{Verdict: "booted"}, shot, serial); err != nil {
		t.Fatal(err)
	}

	// A writer session in progress: its session file, lock and image.
	sess, err := repo.BeginPoint(ctx, "imp", blockmap.PointOptions{Purpose: "open session"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Abort(ctx)
	w, err := sess.AddDisk(ctx, "d1", 1<<20, blockmap.DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBlock(0, make([]byte, repo.BlockSize())); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, repo.BlockSize())
	block[0] = 1
	if err := w.WriteBlock(1, block); err != nil {
		t.Fatal(err)
	}

	seen := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		seen++
		for _, p := range pats {
			if p.MatchString(rel) {
				return nil
			}
		}
		kind := "file"
		if d.IsDir() {
			kind = "directory"
		}
		t.Errorf("%s %s is not in the file table of docs/repository.md: add a row (what writes it, content, whether it may be deleted)", kind, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"remotes/off1.json", "sessions/imp.json", "locks/web-1.lock", "jobs/jobs.jsonl", "api-token", "bootchecks/web-1/" + res.PointID + "/result.json"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("the operations did not make %s: %v", want, err)
		}
	}
	t.Logf("%d paths under the repository", seen)
}

// runServeBriefly starts cairn serve on repoDir (in this process), waits
// for its serve.json and API token, and stops it.
func runServeBriefly(t *testing.T, sim *esxsim.Sim, repoDir string) {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := serve.ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
vcenters:
  - name: sim
    url: %s
    credentials: %s
    thumbprint: %q
jobs:
  - name: yearly
    vcenter: sim
    vms: [web-1]
    schedule: "0 0 1 1 *"
    transports: [file]
notify:
  targets:
    - webhook: {url: "http://127.0.0.1:9/"}
`, repoDir, sim.URL, creds, sim.Thumbprint)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := serve.New(cfg, serve.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := serve.ReadServeFile(repoDir); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("cairn serve wrote no serve.json")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

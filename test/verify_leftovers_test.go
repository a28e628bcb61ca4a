package test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestHelperOpenSession is not a test: run by TestVerifyLeftovers as a
// child, it opens a writer session of VM "a" in $CAIRN_OPEN_SESSION_REPO,
// writes a block, says "ready" and waits to be killed (a writer killed
// with SIGKILL, as by the OOM killer).
func TestHelperOpenSession(t *testing.T) {
	dir := os.Getenv("CAIRN_OPEN_SESSION_REPO")
	if dir == "" {
		return
	}
	ctx := context.Background()
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		os.Exit(3)
	}
	s, err := repo.BeginPoint(ctx, "a", blockmap.PointOptions{Purpose: "a writer killed"})
	if err != nil {
		os.Exit(4)
	}
	w, err := s.AddDisk(ctx, "d0", 4<<20, blockmap.DiskOptions{})
	if err != nil {
		os.Exit(5)
	}
	if _, err := w.WriteAt([]byte(strings.Repeat("x", 64<<10)), 1<<20); err != nil {
		os.Exit(6)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

// TestVerifyLeftovers: what a killed writer leaves (an open session, an
// orphaned delta image) is listed by cairn verify, which says that it is
// harmless and what removes it, and exits 0; the next import of the VM
// does remove it. Damage (a delta image missing) exits 1 and says so.
func TestVerifyLeftovers(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", repo, "init")
	src := filepath.Join(t.TempDir(), "disk.img")
	makeImage(t, src, 4<<20)
	writeRandom(t, src, 0, 1<<20, 1)
	mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0", src)

	child := exec.Command(os.Args[0], "-test.run=^TestHelperOpenSession$")
	child.Env = append(os.Environ(), "CAIRN_OPEN_SESSION_REPO="+repo)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	child.Process.Kill()
	child.Wait()
	if line != "ready\n" {
		t.Fatalf("the writer did not open its session: %q", line)
	}

	res := runCairn(t, nil, "--repo", repo, "verify")
	if res.code != 0 || !strings.Contains(res.stdout, "PROBLEM open session: VM a") ||
		!strings.Contains(res.stdout, "leftovers of an interrupted write, prune or forget: harmless to every point") ||
		!strings.Contains(res.stdout, "the next backup, import, prune or forget of the VM removes them") {
		t.Fatalf("verify with a killed writer's leftovers: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// what removes them does
	writeRandom(t, src, 2<<20, 64<<10, 2)
	mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0", src)
	if out := mustCairn(t, "--repo", repo, "verify"); !strings.Contains(out, "0 bad, 0 other problems") || strings.Contains(out, "PROBLEM") {
		t.Fatalf("the next import left the leftovers:\n%s", out)
	}

	// damage: a delta image gone
	imgs, _ := filepath.Glob(filepath.Join(repo, "images", "*", "*.img"))
	if len(imgs) != 2 {
		t.Fatalf("images %v, want the import's two", imgs)
	}
	if err := os.Remove(imgs[len(imgs)-1]); err != nil {
		t.Fatal(err)
	}
	res = runCairn(t, nil, "--repo", repo, "verify")
	if res.code != 1 || !strings.Contains(res.stdout, "PROBLEM missing delta image") || !strings.Contains(res.stdout, "damage") || strings.Contains(res.stdout, "harmless") {
		t.Errorf("verify with a delta image missing: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestCLIDiskComesBack: point 1 has disks a and b (b holds random data in
// blocks 10-13), point 2 only a, point 3 a and b again with b all zero.
// Export, the mount and verify must show point 3's b as zeros, also after
// point 1 is forgotten. (Issue #12, item 1.)
func TestCLIDiskComesBack(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	const bs = 65536
	a, b, zero := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img"), filepath.Join(dir, "zero.img")
	makeImage(t, a, 16*bs)
	writeRandom(t, a, 0, 16*bs, 1)
	makeImage(t, b, 16*bs)
	writeRandom(t, b, 10*bs, 4*bs, 2)
	makeImage(t, zero, 16*bs)
	mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
	mustCairn(t, "--repo", repo, "import", "--vm", "vm", "--disk", "a", "--disk", "b", a, b)
	mustCairn(t, "--repo", repo, "import", "--vm", "vm", "--disk", "a", a)
	p3 := strings.TrimSpace(mustCairn(t, "--repo", repo, "import", "--vm", "vm", "--disk", "a", "--disk", "b", a, zero))
	check := func(what string) {
		t.Helper()
		if got, want := exportSHA(t, repo, "vm", p3, "b"), fileSHA(t, zero); got != want {
			t.Fatalf("%s: export of the disk that came back gives the old disk's bytes", what)
		}
		if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 {
			t.Fatalf("%s: verify: %s %s", what, res.stdout, res.stderr)
		}
	}
	check("disk back")
	mustCairn(t, "--repo", repo, "forget", "--vm", "vm", "--point", "1")
	check("after forget of point 1")
	t.Run("mount", func(t *testing.T) {
		testutil.RequireFUSE(t)
		mnt := filepath.Join(dir, "mnt")
		os.Mkdir(mnt, 0o755)
		cmd := exec.Command(buildCairn(t), "--repo", repo, "mount", mnt)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { exec.Command("umount", "-l", mnt).Run(); cmd.Wait() }()
		img := filepath.Join(mnt, "vm", p3, "disks", "b.img")
		mountEventually(t, "mount shows the point", func() error { _, err := os.Stat(img); return err })
		got, err := os.ReadFile(img)
		if err != nil || !bytes.Equal(got, make([]byte, 16*bs)) {
			t.Fatalf("the mount shows the old disk's bytes for the disk that came back (%v)", err)
		}
	})
}

// TestCLIIndexDamaged truncates every table of the index: points, export
// and verify fail with an error naming the damaged index and advice, and
// none panics. (Issue #12, item 4.)
func TestCLIIndexDamaged(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	makeImage(t, src, 4<<20)
	writeRandom(t, src, 0, 2<<20, 3)
	mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
	p := strings.TrimSpace(mustCairn(t, "--repo", repo, "import", "--vm", "vm", "--disk", "d0", src))
	ssts, _ := filepath.Glob(filepath.Join(repo, "index", "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no index tables")
	}
	for _, f := range ssts {
		fi, _ := os.Stat(f)
		if err := os.Truncate(f, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"points"},
		{"export", "--vm", "vm", "--point", p, "--disk", "d0", filepath.Join(dir, "x.img")},
		{"verify"},
	} {
		res := runCairn(t, nil, append([]string{"--repo", repo}, args...)...)
		if res.code == 0 {
			t.Errorf("cairn %s succeeded on a damaged index", args[0])
		}
		if strings.Contains(res.stderr, "panic") || strings.Contains(res.stderr, "goroutine") {
			t.Errorf("cairn %s panicked: %s", args[0], res.stderr)
		}
		if !strings.Contains(res.stderr, "index is damaged") || !strings.Contains(res.stderr, "cairn verify") {
			t.Errorf("cairn %s does not name the damaged index with advice: %s", args[0], res.stderr)
		}
	}
}

// TestCLIForgetWithUnwritableCatalogSeq: with catalog.seq immutable,
// forget deletes the point, says what it deleted and that its space is
// not released, and exits non-zero; the next forget once the file is
// writable releases it. (Issue #12, item 3.)
func TestCLIForgetWithUnwritableCatalogSeq(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "chattr")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	makeImage(t, src, 4<<20)
	writeRandom(t, src, 0, 2<<20, 4)
	mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
	mustCairn(t, "--repo", repo, "import", "--vm", "vm", "--disk", "d0", src)
	writeRandom(t, src, 0, 2<<20, 5)
	mustCairn(t, "--repo", repo, "import", "--vm", "vm", "--disk", "d0", src)
	mustCairn(t, "--repo", repo, "import", "--vm", "vm", "--disk", "d0", src)
	seq := filepath.Join(repo, "catalog.seq")
	if out, err := exec.Command("chattr", "+i", seq).CombinedOutput(); err != nil {
		testutil.Missing(t, fmt.Sprintf("chattr +i on the temporary directory's filesystem: %v %s", err, out))
	}
	defer exec.Command("chattr", "-i", seq).Run()
	res := runCairn(t, nil, "--repo", repo, "forget", "--vm", "vm", "--point", "1")
	if res.code == 0 || !strings.Contains(res.stdout, "deleted vm") || !strings.Contains(res.stderr, "not released") || !strings.Contains(res.stderr, "catalog.seq") {
		t.Fatalf("forget with catalog.seq immutable: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	exec.Command("chattr", "-i", seq).Run()
	mustCairn(t, "--repo", repo, "forget", "--vm", "vm", "--point", "2")
	checkClean(t, repo)
}

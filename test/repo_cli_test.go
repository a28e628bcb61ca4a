package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// writeRandom fills [off, off+n) of the file at path with seeded random bytes.
func writeRandom(t testing.TB, path string, off, n int64, seed uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	buf := make([]byte, 1<<20)
	for done := int64(0); done < n; {
		l := min(int64(len(buf)), n-done)
		rng.Read(buf[:l])
		if _, err := f.WriteAt(buf[:l], off+done); err != nil {
			t.Fatal(err)
		}
		done += l
	}
}

func makeImage(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// exportSHA exports a disk of a point with the CLI and returns its sha256.
func exportSHA(t testing.TB, repo, vm, point, disk string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export.img")
	mustCairn(t, "--repo", repo, "export", "--vm", vm, "--point", point, "--disk", disk, out)
	return fileSHA(t, out)
}

func listPoints(t testing.TB, repo, vm string) []blockmap.Point {
	t.Helper()
	res := runCairn(t, nil, "--repo", repo, "points", "--json")
	if res.code != 0 {
		t.Fatalf("points: %s", res.stderr)
	}
	var out struct {
		VMs []blockmap.VMSummary `json:"vms"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("points --json is not JSON: %v\n%s", err, res.stdout)
	}
	for _, v := range out.VMs {
		if v.Name == vm {
			return v.Points
		}
	}
	return nil
}

func checkClean(t testing.TB, repoDir string) {
	t.Helper()
	r, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	probs, err := r.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) > 0 {
		t.Fatalf("repository has leftovers:\n%s", strings.Join(probs, "\n"))
	}
}

// TestImportKilled kills a real `cairn import` with SIGKILL at several
// moments of a large import and proves that earlier points are intact, the
// interrupted point is invisible, and the next import sweeps every leftover.
func TestImportKilled(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	const size = 384 << 20
	makeImage(t, src, size)
	writeRandom(t, src, 0, size*3/4, 1)
	mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
	start := time.Now()
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
	full := time.Since(start)
	want := map[string]string{} // point id -> sha256
	pts := listPoints(t, repo, "vm1")
	want[pts[0].ID] = fileSHA(t, src)

	fractions := []float64{0.05, 0.25, 0.5, 0.75, 0.9, 1.0}
	killedSomething := 0
	for i, frac := range fractions {
		// Change a quarter of the disk so the import has real work to do.
		writeRandom(t, src, int64(i%4)*(size/4), size/4, uint64(100+i))
		cmd := exec.Command(buildCairn(t), "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(frac * float64(full)))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if err != nil {
			killedSomething++
		}
		got := listPoints(t, repo, "vm1")
		switch {
		case err == nil && len(got) != len(want)+1:
			t.Fatalf("kill %d: import finished but %d points listed, want %d", i, len(got), len(want)+1)
		case len(got) == len(want)+1:
			// The commit happened before the kill (perhaps the process was
			// killed while exiting): the point must then be complete.
			want[got[len(got)-1].ID] = fileSHA(t, src)
		case len(got) != len(want):
			t.Fatalf("kill %d at %.0f%%: %d points listed after the kill, want %d (the interrupted point must stay invisible)", i, frac*100, len(got), len(want))
		}
		for _, p := range got {
			if sha := exportSHA(t, repo, "vm1", p.ID, "d0"); sha != want[p.ID] {
				t.Fatalf("kill %d: point %s changed after a killed import", i, p.ID)
			}
		}
		if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 {
			t.Fatalf("kill %d: verify after a killed import: %s %s", i, res.stdout, res.stderr)
		}
	}
	if killedSomething == 0 {
		t.Fatalf("no import was interrupted; the test proved nothing")
	}
	// The next import succeeds and sweeps every leftover.
	writeRandom(t, src, 0, 1<<20, 999)
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
	got := listPoints(t, repo, "vm1")
	if sha := exportSHA(t, repo, "vm1", "latest", "d0"); sha != fileSHA(t, src) {
		t.Fatalf("import after kills stored wrong bytes")
	}
	if len(got) != len(want)+1 {
		t.Fatalf("%d points after the final import, want %d", len(got), len(want)+1)
	}
	checkClean(t, repo)
}

func dirAllocated(t testing.TB, dir string) int64 {
	t.Helper()
	var total int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	return total
}

func imageInodes(t testing.TB, repo string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	matches, _ := filepath.Glob(filepath.Join(repo, "images", "*", "*.img"))
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			t.Fatal(err)
		}
		out[m] = fi.Sys().(*syscall.Stat_t).Ino
	}
	return out
}

// TestPruneReleasesSpace proves that prune keeps retained points identical,
// really releases space, and never copies a delta image.
func TestPruneReleasesSpace(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	const size = 64 << 20
	makeImage(t, src, size+12345)
	mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
	sums := map[string]string{}
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for g := 0; g < 8; g++ {
		// Each generation rewrites a different quarter, so old versions die.
		writeRandom(t, src, int64(g%4)*(size/4), size/4, uint64(g))
		id := strings.TrimSpace(mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0",
			"--time", base.Add(time.Duration(g)*time.Hour).Format(time.RFC3339), src))
		sums[id] = fileSHA(t, src)
	}
	before := dirAllocated(t, filepath.Join(repo, "images"))
	inodes := imageInodes(t, repo)
	dry := mustCairn(t, "--repo", repo, "prune", "--keep-last", "2", "--dry-run")
	if !strings.Contains(dry, "6 points would be deleted") {
		t.Fatalf("dry run said: %s", dry)
	}
	if len(listPoints(t, repo, "vm1")) != 8 {
		t.Fatalf("dry run deleted points")
	}
	mustCairn(t, "--repo", repo, "prune", "--keep-last", "2")
	pts := listPoints(t, repo, "vm1")
	if len(pts) != 2 {
		t.Fatalf("%d points after prune --keep-last 2", len(pts))
	}
	for _, p := range pts {
		if exportSHA(t, repo, "vm1", p.ID, "d0") != sums[p.ID] {
			t.Fatalf("retained point %s reads differently after prune", p.ID)
		}
	}
	after := dirAllocated(t, filepath.Join(repo, "images"))
	// Two retained points of a 64 MiB disk need at most about 64 MiB + a quarter.
	if after >= before || after > size*5/4+1<<20 {
		t.Fatalf("prune did not release space: %d bytes allocated before, %d after", before, after)
	}
	for path, ino := range imageInodes(t, repo) {
		old, ok := inodes[path]
		if !ok || old != ino {
			t.Fatalf("delta image %s was created or copied by prune (inode %d, was %d)", path, ino, old)
		}
	}
	if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 || !strings.Contains(res.stdout, "0 bad, 0 other problems") {
		t.Fatalf("verify after prune: %s %s", res.stdout, res.stderr)
	}
	checkClean(t, repo)
}

// TestVerifyFindsFlippedByte flips one byte inside a delta image and checks
// that verify names exactly that block and the points that read it.
func TestVerifyFindsFlippedByte(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	const bs = 65536
	makeImage(t, src, 8<<20)
	writeRandom(t, src, 0, 4<<20, 7)
	mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
	p1 := strings.TrimSpace(mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src))
	writeRandom(t, src, 0, bs, 8) // block 0 changes in point 2; block 5 does not
	p2 := strings.TrimSpace(mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", "--changed", "0:65536", src))
	if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 {
		t.Fatalf("clean repository does not verify: %s %s", res.stdout, res.stderr)
	}
	imgs, _ := filepath.Glob(filepath.Join(repo, "images", "*", "1.img"))
	if len(imgs) != 1 {
		t.Fatalf("expected one generation-1 image, found %v", imgs)
	}
	f, err := os.OpenFile(imgs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 5*bs+100)
	b[0] ^= 0xff
	f.WriteAt(b, 5*bs+100)
	f.Close()
	res := runCairn(t, nil, "--repo", repo, "verify")
	if res.code == 0 {
		t.Fatalf("verify passed a flipped byte: %s", res.stdout)
	}
	bad := regexp.MustCompile(`(?m)^BAD .*$`).FindAllString(res.stdout, -1)
	if len(bad) != 1 {
		t.Fatalf("want exactly one BAD line, got %d:\n%s", len(bad), res.stdout)
	}
	wantLine := fmt.Sprintf("BAD vm=vm1 disk=d0 offset=%d generation=1 points=[%s %s]", 5*bs, p1, p2)
	if !strings.HasPrefix(bad[0], wantLine) {
		t.Fatalf("verify said %q, want it to start with %q", bad[0], wantLine)
	}
	// Reading the block through export fails cleanly, naming the block.
	res = runCairn(t, nil, "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", filepath.Join(dir, "x.img"))
	if res.code == 0 || !strings.Contains(res.stderr, fmt.Sprintf("offset %d", 5*bs)) {
		t.Fatalf("export of a corrupt block: exit %d: %s", res.code, res.stderr)
	}
	// Verify of only point 2's view also finds it; a flip in block 0 of gen 1 is seen by point 1 only.
	f, _ = os.OpenFile(imgs[0], os.O_RDWR, 0)
	f.ReadAt(b, 10)
	b[0] ^= 0xff
	f.WriteAt(b, 10)
	f.Close()
	res = runCairn(t, nil, "--repo", repo, "verify", "--vm", "vm1", "--point", p2)
	if bad := regexp.MustCompile(`(?m)^BAD .*$`).FindAllString(res.stdout, -1); len(bad) != 1 {
		t.Fatalf("verify --point %s: want 1 bad block (block 0 of gen 1 is not seen by it), got:\n%s", p2, res.stdout)
	}
	res = runCairn(t, nil, "--repo", repo, "verify", "--vm", "vm1", "--point", p1)
	if !strings.Contains(res.stdout, fmt.Sprintf("BAD vm=vm1 disk=d0 offset=0 generation=1 points=[%s]", p1)) {
		t.Fatalf("verify --point %s missed block 0:\n%s", p1, res.stdout)
	}
}

func requireOneLineError(t *testing.T, res cairnResult, want string) {
	t.Helper()
	if res.code == 0 {
		t.Fatalf("exit 0, want an error containing %q", want)
	}
	msg := strings.TrimSpace(res.stderr)
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, want) || strings.Contains(msg, "panic") {
		t.Fatalf("error %q: want one line containing %q", msg, want)
	}
}

// TestBadInput gives each kind of bad input and checks for a clear
// one-line error, a non-zero exit, and a consistent repository.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	makeImage(t, src, 4<<20+100)
	writeRandom(t, src, 0, 1<<20, 3)
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing repo", []string{"--repo", filepath.Join(dir, "nope"), "points"}, "does not exist"},
		{"not a repo", []string{"--repo", empty, "points"}, "not a cairn repository"},
		{"no repo", []string{"points"}, "use --repo DIR or set CAIRN_REPO"},
		{"unknown vm", []string{"--repo", repo, "export", "--vm", "vm9", "--disk", "d0", filepath.Join(dir, "o")}, `VM "vm9"`},
		{"unknown point", []string{"--repo", repo, "export", "--vm", "vm1", "--point", "2001-01-01T00-00-00Z", "--disk", "d0", filepath.Join(dir, "o")}, "has no recovery point"},
		{"unknown disk", []string{"--repo", repo, "export", "--vm", "vm1", "--disk", "d7", filepath.Join(dir, "o")}, `no disk "d7"`},
		{"missing source", []string{"--repo", repo, "import", "--vm", "vm1", "--disk", "d0", filepath.Join(dir, "missing.img")}, "no such file"},
		{"directory source", []string{"--repo", repo, "import", "--vm", "vm1", "--disk", "d0", empty}, "not a regular file or block device"},
		{"disk count mismatch", []string{"--repo", repo, "import", "--vm", "vm1", "--disk", "d0", "--disk", "d1", src}, "one PATH per --disk"},
		{"bad changed", []string{"--repo", repo, "import", "--vm", "vm1", "--disk", "d0", "--changed", "12x", src}, "OFFSET:LENGTH"},
		{"bad block size", []string{"--repo", filepath.Join(dir, "r2"), "init", "--block-size", "1000"}, "power of two"},
		{"init twice", []string{"--repo", repo, "init"}, "already exists"},
		{"bad vm name", []string{"--repo", repo, "import", "--vm", "a/b", "--disk", "d0", src}, "must not contain '/'"},
		{"prune without rule", []string{"--repo", repo, "prune"}, "give at least one of --keep-last"},
		{"forget unknown", []string{"--repo", repo, "forget", "--vm", "vm1", "--point", "99"}, "has no recovery point"},
	}
	env := []string{"CAIRN_REPO="}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requireOneLineError(t, runCairn(t, env, c.args...), c.want)
		})
	}
	if n := len(listPoints(t, repo, "vm1")); n != 1 {
		t.Fatalf("bad input changed the repository: %d points", n)
	}
	checkClean(t, repo)

	t.Run("disk size changed", func(t *testing.T) {
		if err := os.Truncate(src, 9<<20+7); err != nil {
			t.Fatal(err)
		}
		writeRandom(t, src, 8<<20, 4096, 11)
		mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
		pts := listPoints(t, repo, "vm1")
		last := pts[len(pts)-1]
		if d, _ := last.Disk("d0"); d.Size != 9<<20+7 || !d.Full || !strings.Contains(d.FullReason, "size changed") {
			t.Fatalf("grown disk: %+v", d)
		}
		if exportSHA(t, repo, "vm1", "latest", "d0") != fileSHA(t, src) {
			t.Fatalf("grown disk reads wrong")
		}
		os.Truncate(src, 2<<20)
		mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
		if exportSHA(t, repo, "vm1", "latest", "d0") != fileSHA(t, src) {
			t.Fatalf("shrunk disk reads wrong")
		}
		checkClean(t, repo)
	})

	t.Run("vm in use", func(t *testing.T) {
		r, err := blockmap.Open(context.Background(), repo, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		s, err := r.BeginPoint(context.Background(), "vm1", blockmap.PointOptions{Purpose: "test holder"})
		if err != nil {
			t.Fatal(err)
		}
		requireOneLineError(t, runCairn(t, nil, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src),
			fmt.Sprintf("is in use by pid %d (test holder)", os.Getpid()))
		requireOneLineError(t, runCairn(t, nil, "--repo", repo, "forget", "--vm", "vm1", "--point", "latest"), "in use by pid")
		// Another VM of the same repository can be backed up meanwhile, and readers work.
		mustCairn(t, "--repo", repo, "import", "--vm", "vm2", "--disk", "d0", src)
		mustCairn(t, "--repo", repo, "points")
		if err := s.Abort(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkClean(t, repo)
	})

	t.Run("filesystem full", func(t *testing.T) {
		testutil.RequireRoot(t)
		mnt := filepath.Join(dir, "small")
		os.Mkdir(mnt, 0o755)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		defer exec.Command("umount", mnt).Run()
		small := filepath.Join(mnt, "repo")
		big := filepath.Join(dir, "big.img")
		makeImage(t, big, 64<<20)
		writeRandom(t, big, 0, 40<<20, 5)
		mustCairn(t, "--repo", small, "init", "--block-size", "65536")
		mustCairn(t, "--repo", small, "import", "--vm", "vm1", "--disk", "d0", src)
		requireOneLineError(t, runCairn(t, nil, "--repo", small, "import", "--vm", "vm1", "--disk", "d0", big), "no space left on device")
		if n := len(listPoints(t, small, "vm1")); n != 1 {
			t.Fatalf("%d points after a failed import, want 1", n)
		}
		if exportSHA(t, small, "vm1", "latest", "d0") != fileSHA(t, src) {
			t.Fatalf("earlier point damaged by a full filesystem")
		}
		mustCairn(t, "--repo", small, "import", "--vm", "vm1", "--disk", "d0", src)
		checkClean(t, small)
	})
}

var _ = bytes.Equal

// TestPointsListedByTime: `cairn points` lists a VM's points by time, as
// latest and retention go, even when a generation holds an older point
// (imported out of order, or pulled latest first).
func TestPointsListedByTime(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	makeImage(t, src, 1<<20)
	mustCairn(t, "--repo", repo, "init")
	newer := strings.TrimSpace(mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", "--time", "2026-03-02T00:00:00Z", src))
	older := strings.TrimSpace(mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", "--time", "2026-03-01T00:00:00Z", src))
	out := mustCairn(t, "--repo", repo, "points")
	i, j := strings.Index(out, older), strings.Index(out, newer)
	if i < 0 || j < 0 || i > j {
		t.Fatalf("points not listed by time (older %s, newer %s):\n%s", older, newer, out)
	}
}

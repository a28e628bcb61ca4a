package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// Kill tests: each writing command is killed with SIGKILL at several
// moments (fractions of the time an uninterrupted run of it took, so the
// kills spread over its work on any machine) and the repository and the
// output are checked after each kill. The assertions hold wherever a kill
// lands; only which code paths a kill reaches depends on the machine.

// killFractions are the moments of the kills, as fractions of the time
// an uninterrupted run took.
var killFractions = []float64{0.15, 0.3, 0.45, 0.6, 0.75, 0.9}

// crashFixture is a repository with five points of VM vm1 (each changes
// 6 MiB of a 32 MiB disk, overlapping the one before) and one point of
// VM g holding an ext4 filesystem; hashes are the sha256 of each vm1
// point's exported disk, by generation.
type crashFixture struct {
	dir, repo string
	hashes    map[uint32]string
	guest     string // the staging tree the ext4 of VM g was made from
}

func newCrashFixture(t *testing.T) *crashFixture {
	t.Helper()
	testutil.RequireTools(t, "mkfs.ext4", "cp")
	dir := t.TempDir()
	f := &crashFixture{dir: dir, repo: filepath.Join(dir, "base"), hashes: map[uint32]string{}}
	src := filepath.Join(dir, "disk.img")
	makeImage(t, src, 32<<20)
	mustCairn(t, "--repo", f.repo, "init", "--block-size", "65536")
	for i := range 5 {
		writeRandom(t, src, int64(i)*5<<20, 6<<20, uint64(40+i))
		mustCairn(t, "--repo", f.repo, "import", "--vm", "vm1", "--disk", "d0",
			"--time", time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC).Format(time.RFC3339), src)
	}
	f.hashes = pointHashes(t, f.repo, "vm1", "d0")
	if len(f.hashes) != 5 {
		t.Fatalf("fixture: %d points, want 5", len(f.hashes))
	}
	// The CLI exports what the library reads.
	if got := exportSHA(t, f.repo, "vm1", "5", "d0"); got != f.hashes[5] {
		t.Fatal("fixture: export and reader disagree")
	}
	f.guest = filepath.Join(dir, "guest")
	for i, name := range []string{"a.bin", "sub/b.bin", "sub/deeper/c.bin"} {
		p := filepath.Join(f.guest, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeRandom(t, p, 0, 8<<20, uint64(70+i))
	}
	if err := os.WriteFile(filepath.Join(f.guest, "small.txt"), []byte("small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "ext4.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", f.guest, img, "48M")
	mustCairn(t, "--repo", f.repo, "import", "--vm", "g", "--disk", "sda", img)
	return f
}

// copyRepo is a fresh copy of the fixture's repository.
func (f *crashFixture) copyRepo(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "repo")
	if out, err := exec.Command("cp", "-a", "--sparse=always", f.repo, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

// eachPointHash reads every point of vm in repo (in this process, as the
// CLI's readers do) and calls fn with each one and the sha256 of its disk.
func eachPointHash(t *testing.T, repoDir, vm, disk string, fn func(p blockmap.Point, sha string)) {
	t.Helper()
	ctx := context.Background()
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	pts, err := repo.Points(ctx, vm)
	if err != nil && !errors.Is(err, blockmap.ErrNotFound) {
		t.Fatal(err)
	}
	for _, p := range pts {
		b, _ := readPoint(t, repo, p, disk)
		sum := sha256.Sum256(b)
		fn(p, hex.EncodeToString(sum[:]))
	}
}

// pointHashes is the sha256 of each point's disk by generation.
func pointHashes(t *testing.T, repoDir, vm, disk string) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	eachPointHash(t, repoDir, vm, disk, func(p blockmap.Point, sha string) { out[p.Gen] = sha })
	return out
}

// checkCommitted asserts that every vm1 point listed in repo is one of
// the fixture's, with its bytes unchanged, and that verify passes; it
// returns the generations listed.
func (f *crashFixture) checkCommitted(t *testing.T, repo, when string) map[uint32]bool {
	t.Helper()
	listed := map[uint32]bool{}
	for gen, got := range pointHashes(t, repo, "vm1", "d0") {
		want, ok := f.hashes[gen]
		if !ok {
			t.Fatalf("%s: generation %d listed that was never committed", when, gen)
		}
		if got != want {
			t.Fatalf("%s: point of generation %d changed", when, gen)
		}
		listed[gen] = true
	}
	if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 || !strings.Contains(res.stdout, ": 0 bad") {
		t.Fatalf("%s: verify: exit %d\n%s%s", when, res.code, res.stdout, res.stderr)
	}
	return listed
}

// timeRun is how long an uninterrupted run of cairn args takes (it must
// succeed).
func timeRun(t *testing.T, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	mustCairn(t, args...)
	return time.Since(start)
}

// killAfter starts cairn args, kills it with SIGKILL after d and reports
// whether it had finished (exit 0) before the kill.
func killAfter(t *testing.T, d time.Duration, args ...string) bool {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	return cmd.Wait() == nil
}

// killRounds calls try (which kills a run after d and reports whether the
// kill interrupted it) at each of killFractions of full. When no kill
// interrupted anything (the timed run was slow on a loaded machine) it
// tries again at a quarter of the moments, up to three rounds, and fails
// if still none did: such a test would prove nothing.
func killRounds(t *testing.T, full time.Duration, what string, try func(i int, d time.Duration) bool) {
	t.Helper()
	for range 3 {
		interrupted := 0
		for i, frac := range killFractions {
			if try(i, scaled(full, frac)) {
				interrupted++
			}
		}
		if interrupted > 0 {
			return
		}
		full /= 4
	}
	t.Fatalf("no %s was interrupted; the test proved nothing", what)
}

func scaled(d time.Duration, frac float64) time.Duration {
	return time.Duration(frac * float64(d))
}

// partialsUnder lists the temporary files of export and restore-file
// (.NAME.cairn-partial) under dir.
func partialsUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(d.Name(), ".cairn-partial") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestCrashSafety kills prune, forget, export, restore-file and verify
// (the last while an import writes) at several moments each, and fills
// the filesystem of a repository, of its index and of an output
// (crash_diskfull_test.go); all on one fixture.
func TestCrashSafety(t *testing.T) {
	testutil.RequireRoot(t) // restore-file keeps owners; mounts
	f := newCrashFixture(t)
	t.Run("killed", func(t *testing.T) { killedWriters(t, f) })
	t.Run("full", func(t *testing.T) { diskFull(t, f) })
}

func killedWriters(t *testing.T, f *crashFixture) {
	// prune: the points it keeps never change; a point is listed whole
	// or not at all; the next prune finishes the work and leaves no
	// leftover (no block version nor image that no point can see).
	t.Run("prune", func(t *testing.T) {
		args := []string{"prune", "--vm", "vm1", "--keep-last", "2"}
		full := timeRun(t, append([]string{"--repo", f.copyRepo(t)}, args...)...)
		killRounds(t, full, "prune", func(i int, d time.Duration) bool {
			repo := f.copyRepo(t)
			finished := killAfter(t, d, append([]string{"--repo", repo}, args...)...)
			when := "prune killed at " + strconv.Itoa(i)
			listed := f.checkCommitted(t, repo, when)
			if !listed[4] || !listed[5] {
				t.Fatalf("%s: a point the policy keeps is gone: %v", when, listed)
			}
			mustCairn(t, "--repo", repo, "prune", "--vm", "vm1", "--keep-last", "2")
			if got := f.checkCommitted(t, repo, when+", then run again"); len(got) != 2 {
				t.Fatalf("%s: %d points after the next prune, want 2", when, len(got))
			}
			checkClean(t, repo)
			return !finished
		})
	})

	// forget: as prune; when the kill came after the deletion, forget of
	// the same points says they are gone and still finishes the work.
	t.Run("forget", func(t *testing.T) {
		args := []string{"forget", "--vm", "vm1", "--point", "1", "--point", "2", "--point", "3"}
		full := timeRun(t, append([]string{"--repo", f.copyRepo(t)}, args...)...)
		for i, frac := range killFractions {
			repo := f.copyRepo(t)
			killAfter(t, scaled(full, frac), append([]string{"--repo", repo}, args...)...)
			when := "forget killed at " + strconv.Itoa(i)
			listed := f.checkCommitted(t, repo, when)
			if !listed[4] || !listed[5] {
				t.Fatalf("%s: a point not named is gone: %v", when, listed)
			}
			again := []string{"--repo", repo, "forget", "--vm", "vm1"}
			for g := range listed {
				if g <= 3 {
					again = append(again, "--point", strconv.Itoa(int(g)))
				}
			}
			if len(again) > 5 {
				mustCairn(t, again...)
			} else if res := runCairn(t, nil, "--repo", repo, "forget", "--vm", "vm1", "--point", "1"); res.code == 0 || !strings.Contains(res.stderr, `has no recovery point "1"`) {
				t.Fatalf("%s: forget of a deleted point: exit %d %s", when, res.code, res.stderr)
			}
			if got := f.checkCommitted(t, repo, when+", then run again"); len(got) != 2 {
				t.Fatalf("%s: %d points after the next forget, want 2", when, len(got))
			}
			checkClean(t, repo)
		}
	})

	// export: nothing is ever at the output's name unless it is the whole
	// disk; the next export succeeds and leaves no temporary file.
	t.Run("export", func(t *testing.T) {
		outDir := t.TempDir()
		out := filepath.Join(outDir, "vm1.img")
		args := []string{"--repo", f.repo, "export", "--vm", "vm1", "--point", "5", "--disk", "d0", out}
		full := timeRun(t, args...)
		os.Remove(out)
		killRounds(t, full, "export", func(i int, d time.Duration) bool {
			finished := killAfter(t, d, args...)
			if _, err := os.Stat(out); err == nil {
				if got := fileSHA(t, out); got != f.hashes[5] {
					t.Fatalf("export killed at %d: %s is there but is not the disk (a partial export at the final name)", i, out)
				}
				os.Remove(out)
			}
			return !finished
		})
		mustCairn(t, args...)
		if got := fileSHA(t, out); got != f.hashes[5] {
			t.Fatal("export after the kills wrote wrong bytes")
		}
		if left := partialsUnder(t, outDir); len(left) > 0 {
			t.Fatalf("temporary files left after a complete export: %v", left)
		}
		checkClean(t, f.repo)
	})

	// restore-file: every file at its final name is whole; the next
	// restore completes the tree and leaves no temporary file.
	t.Run("restore-file", func(t *testing.T) {
		args := func(dest string) []string {
			return []string{"--repo", f.repo, "restore-file", "--vm", "g", "--disk", "sda", "--part", "whole", "/", dest}
		}
		full := timeRun(t, args(filepath.Join(t.TempDir(), "out"))...)
		want := map[string]string{}
		filepath.WalkDir(f.guest, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(f.guest, p)
				want[rel] = fileSHA(t, p)
			}
			return nil
		})
		for i, frac := range killFractions {
			dest := filepath.Join(t.TempDir(), "out")
			killAfter(t, scaled(full, frac), args(dest)...)
			filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, ".cairn-partial") {
					return nil
				}
				rel, _ := filepath.Rel(dest, p)
				if w, ok := want[rel]; ok && fileSHA(t, p) != w {
					t.Fatalf("restore-file killed at %d: %s is there but is not the guest's file", i, rel)
				}
				return nil
			})
			mustCairn(t, args(dest)...)
			for rel, w := range want {
				if got := fileSHA(t, filepath.Join(dest, rel)); got != w {
					t.Fatalf("restore-file after a kill: %s restored wrong", rel)
				}
			}
			if left := partialsUnder(t, dest); len(left) > 0 {
				t.Fatalf("restore-file after a kill left temporary files: %v", left)
			}
		}
	})

	// verify while an import or a prune writes: it never reports a bad
	// block; killing it changes nothing and leaves no lock.
	t.Run("verify while importing", func(t *testing.T) {
		repo := f.copyRepo(t)
		src := filepath.Join(t.TempDir(), "disk.img")
		makeImage(t, src, 64<<20)
		writeRandom(t, src, 0, 32<<20, 99)
		imp := exec.Command(buildCairn(t), "--repo", repo, "import", "--vm", "vm2", "--disk", "d0", src)
		if err := imp.Start(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 || !strings.Contains(res.stdout, ": 0 bad") {
				imp.Process.Kill()
				imp.Wait()
				t.Fatalf("verify while an import runs: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
		}
		if err := imp.Wait(); err != nil {
			t.Fatalf("import beside verify: %v", err)
		}
		if got := exportSHA(t, repo, "vm2", "latest", "d0"); got != fileSHA(t, src) {
			t.Fatal("import beside verify stored wrong bytes")
		}
		// Beside a prune: verify reads either side of the deletion, never
		// a block the prune released.
		prune := exec.Command(buildCairn(t), "--repo", repo, "prune", "--vm", "vm1", "--keep-last", "3")
		if err := prune.Start(); err != nil {
			t.Fatal(err)
		}
		res := runCairn(t, nil, "--repo", repo, "verify")
		if err := prune.Wait(); err != nil {
			t.Fatalf("prune beside verify: %v", err)
		}
		if res.code != 0 || !strings.Contains(res.stdout, ": 0 bad") {
			t.Fatalf("verify while a prune runs: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		full := timeRun(t, "--repo", repo, "verify")
		for _, frac := range killFractions {
			killAfter(t, scaled(full, frac), "--repo", repo, "verify")
		}
		f.checkCommitted(t, repo, "after killed verifies")
		writeRandom(t, src, 0, 1<<20, 100)
		mustCairn(t, "--repo", repo, "import", "--vm", "vm2", "--disk", "d0", src)
		if got := exportSHA(t, repo, "vm2", "latest", "d0"); got != fileSHA(t, src) {
			t.Fatal("import after killed verifies stored wrong bytes")
		}
		checkClean(t, repo)
	})
}

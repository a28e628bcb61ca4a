package test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// looseRepoPaths lists the repository paths other users may read.
func looseRepoPaths(t *testing.T, repo string) (loose []string, seen int) {
	t.Helper()
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		seen++
		if fi.Mode().Perm()&0o077 != 0 {
			loose = append(loose, p+" "+fi.Mode().Perm().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return loose, seen
}

// TestRepoModesCLI: under the usual umask 022, `cairn init` and `cairn
// import` leave nothing in the repository (delta images, index, locks,
// catalog.seq, cairn.json, the job log) that other users may read; `cairn
// verify` names the paths an older cairn left world-readable and the
// fix; the next import fixes them.
func TestRepoModesCLI(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	img := filepath.Join(dir, "disk.img")
	makeImage(t, img, 8<<20)
	writeRandom(t, img, 1<<20, 2<<20, 1)
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", img)
	writeRandom(t, img, 4<<20, 1<<20, 2)
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", img)
	loose, seen := looseRepoPaths(t, repo)
	if len(loose) > 0 {
		t.Errorf("after init and two imports, %d of %d repository paths are open to other users:\n%s", len(loose), seen, strings.Join(loose, "\n"))
	}
	for _, want := range []string{"cairn.json", "catalog.seq", "index", "images", "locks"} {
		if _, err := os.Stat(filepath.Join(repo, want)); err != nil {
			t.Errorf("the walk did not cover %s: %v", want, err)
		}
	}

	// An older repository: world-readable everywhere.
	filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	res := runCairn(t, nil, "--repo", repo, "verify")
	if res.code != 0 {
		t.Fatalf("verify of a clean repository with loose modes: exit %d: %s", res.code, res.stderr)
	}
	for _, want := range []string{"WARNING", "open to other users", repo + "\n", filepath.Join(repo, "cairn.json"), "chmod -R go-rwx " + repo} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("verify's warning lacks %q:\n%s", want, res.stderr)
		}
	}
	if l, _ := looseRepoPaths(t, repo); len(l) == 0 {
		t.Fatal("verify (a reader) changed the modes")
	}
	writeRandom(t, img, 6<<20, 1<<20, 3)
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", img)
	if loose, _ := looseRepoPaths(t, repo); len(loose) > 0 {
		t.Errorf("after an import by the owner, still open:\n%s", strings.Join(loose, "\n"))
	}
	if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 || strings.Contains(res.stderr, "WARNING") {
		t.Errorf("verify after the fix: exit %d: %s", res.code, res.stderr)
	}
}

// TestPruneRefusesNegativeKeep: a negative count is refused with the
// flag's name, and no point is deleted (it used to keep only the newest).
func TestPruneRefusesNegativeKeep(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	img := filepath.Join(dir, "disk.img")
	makeImage(t, img, 4<<20)
	mustCairn(t, "--repo", repo, "init")
	for i := range 3 {
		writeRandom(t, img, int64(i)<<20, 1<<20, uint64(i))
		mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", img)
	}
	for _, args := range [][]string{{"--keep-last", "-1"}, {"--keep-daily", "-5"}, {"--keep-last", "1", "--keep-monthly", "-1"}} {
		for _, vm := range [][]string{nil, {"--vm", "vm1"}} {
			a := append(append([]string{"--repo", repo, "prune"}, vm...), args...)
			res := runCairn(t, nil, a...)
			if res.code == 0 || !strings.Contains(res.stderr, "--"+strings.TrimPrefix(args[len(args)-2], "--")) || !strings.Contains(res.stderr, "0 or more") {
				t.Errorf("cairn %s: exit %d, stderr %q; want a refusal naming the flag", strings.Join(a[2:], " "), res.code, res.stderr)
			}
		}
	}
	if pts := listPoints(t, repo, "vm1"); len(pts) != 3 {
		t.Errorf("after refused prunes: %d points, want 3", len(pts))
	}
	// Siblings: every count, limit and timeout flag refuses a negative
	// value instead of silently defaulting it.
	for _, a := range [][]string{
		{"--repo", repo, "jobs", "--last", "-1"},
		{"backup", "--vcenter", "https://127.0.0.1:1/sdk", "--vm", "x", "--nbd-stall-timeout", "-5s"},
		{"backup", "--vcenter", "https://127.0.0.1:1/sdk", "--vm", "x", "--parallel-disks", "-2"},
		{"--repo", repo, "mount", "--grace", "-1s", dir},
	} {
		if res := runCairn(t, nil, a...); res.code == 0 || !strings.Contains(res.stderr, "0 or more") || !strings.Contains(res.stderr, a[len(a)-2]) {
			t.Errorf("cairn %s: exit %d, %s", strings.Join(a, " "), res.code, res.stderr)
		}
	}
	// The library refuses too (serve's retention, any other caller).
	r, err := blockmap.Open(context.Background(), repo, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(context.Background(), "vm1", blockmap.Policy{KeepLast: -1}, false); err == nil || !strings.Contains(err.Error(), "keep-last -1") {
		t.Errorf("Repo.Prune with KeepLast -1: %v", err)
	}
}

// TestOutputsOutsideRepo: export refuses any output inside the
// repository (its own cairn.json, a delta image, a new file, through a
// symlink, or standard output redirected there), and mount refuses a
// mount point inside it; the repository stays intact.
func TestOutputsOutsideRepo(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	img := filepath.Join(dir, "disk.img")
	makeImage(t, img, 4<<20)
	writeRandom(t, img, 0, 1<<20, 1)
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", img)
	cfg, err := os.ReadFile(filepath.Join(repo, "cairn.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(repo, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	outs := []string{filepath.Join(repo, "cairn.json"), filepath.Join(repo, "new.img"), filepath.Join(dir, "link", "cairn.json"),
		filepath.Join(repo, "images", "x", "..", "..", "cairn.json"), repo}
	for _, out := range outs {
		res := runCairn(t, nil, "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", out)
		if res.code == 0 || !strings.Contains(res.stderr, "inside the repository") {
			t.Errorf("export to %s: exit %d, %s", out, res.code, res.stderr)
		}
	}
	// Relative --repo, output given relative too.
	cmd := runCairnIn(t, dir, "", "--repo", "repo", "export", "--vm", "vm1", "--disk", "d0", "repo/cairn.json")
	if cmd.code == 0 || !strings.Contains(cmd.stderr, "inside the repository") {
		t.Errorf("relative export into the repository: exit %d, %s", cmd.code, cmd.stderr)
	}
	// Standard output redirected into the repository.
	so := runCairnIn(t, dir, filepath.Join(repo, "cairn.json"), "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", "-")
	if so.code == 0 || !strings.Contains(so.stderr, "inside the repository") {
		t.Errorf("export - > repo/cairn.json: exit %d, %s", so.code, so.stderr)
	}
	if now, _ := os.ReadFile(filepath.Join(repo, "cairn.json")); string(now) != string(cfg) {
		t.Fatalf("cairn.json changed:\n%s", now)
	}
	if _, err := os.Stat(filepath.Join(repo, "new.img")); err == nil {
		t.Error("export created new.img in the repository")
	}
	if err := os.Mkdir(filepath.Join(repo, "mnt"), 0o700); err != nil {
		t.Fatal(err)
	}
	if res := runCairn(t, nil, "--repo", repo, "mount", filepath.Join(repo, "mnt")); res.code == 0 || !strings.Contains(res.stderr, "inside the repository") {
		t.Errorf("mount inside the repository: exit %d, %s", res.code, res.stderr)
	}
	mustCairn(t, "--repo", repo, "verify")
	out := filepath.Join(dir, "out.img")
	mustCairn(t, "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", out)
	if fileSHA(t, out) != fileSHA(t, img) {
		t.Error("export outside the repository differs from the source")
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("a new export file: mode %v (%v), want 0600: it is a VM's disk", fi.Mode().Perm(), err)
	}
}

// TestPruneSkipsBusyVM: prune of every VM while another process holds
// one VM (an import in progress) prunes the others, names the busy one
// and exits non-zero.
func TestPruneSkipsBusyVM(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	img := filepath.Join(dir, "disk.img")
	makeImage(t, img, 4<<20)
	mustCairn(t, "--repo", repo, "init")
	vms := []string{"a-vm", "b-vm", "c-vm"}
	for i := range 3 {
		writeRandom(t, img, int64(i)<<20, 1<<20, uint64(i))
		for _, vm := range vms {
			mustCairn(t, "--repo", repo, "import", "--vm", vm, "--disk", "d0", "--time", time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC).Format(time.RFC3339), img)
		}
	}
	// This process holds a-vm, as a running import would (the first VM:
	// prune used to stop there).
	ctx := context.Background()
	r, err := blockmap.Open(ctx, repo, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.BeginPoint(ctx, "a-vm", blockmap.PointOptions{Purpose: "test import"})
	if err != nil {
		t.Fatal(err)
	}
	res := runCairn(t, nil, "--repo", repo, "prune", "--keep-last", "1")
	if res.code == 0 || !strings.Contains(res.stderr, "a-vm") || !strings.Contains(res.stderr, "in use") {
		t.Errorf("prune with a busy VM: exit %d, stderr %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "4 points deleted") {
		t.Errorf("prune with a busy VM did not prune the others:\n%s", res.stdout)
	}
	for vm, want := range map[string]int{"a-vm": 3, "b-vm": 1, "c-vm": 1} {
		if n := len(listPoints(t, repo, vm)); n != want {
			t.Errorf("%s: %d points after prune, want %d", vm, n, want)
		}
	}
	s.Abort(ctx)
	mustCairn(t, "--repo", repo, "prune", "--keep-last", "1")
	if n := len(listPoints(t, repo, "a-vm")); n != 1 {
		t.Errorf("a-vm: %d points after the second prune, want 1", n)
	}
}

// runCairnIn runs cairn in dir; with stdoutFile its standard output is
// that file (created), as a shell redirection would make it.
func runCairnIn(t *testing.T, dir, stdoutFile string, args ...string) cairnResult {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	cmd.Dir = dir
	var se bytes.Buffer
	cmd.Stderr = &se
	if stdoutFile != "" {
		f, err := os.OpenFile(stdoutFile, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdout = f
	}
	err := cmd.Run()
	res := cairnResult{stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

// fillFilesystem fills the filesystem mounted at dir to the last block:
// one big file, then small ones until even one byte does not fit.
func fillFilesystem(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	for _, size := range []int{4096, 1} {
		for i := 0; ; i++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("fill-%d-%d", size, i)), buf[:size], 0o600); err != nil {
				break
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("%s not full: %d blocks free", dir, st.Bavail)
	}
}

// TestForgetOnFullFilesystem: on a filesystem filled to the last block
// (a loop-mounted ext4 without root reserve), forget and prune still run
// (the repository's reserve file makes room for the index) and release
// space; verify is clean and the kept point exports right.
func TestForgetOnFullFilesystem(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	makeImage(t, fsImg, 96<<20)
	for _, c := range [][]string{{"mkfs.ext4", "-q", "-m", "0", "-F", fsImg}, {"mount", "-o", "loop", fsImg, mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	repo := filepath.Join(mnt, "repo")
	img := filepath.Join(dir, "disk.img")
	makeImage(t, img, 16<<20)
	mustCairn(t, "--repo", repo, "init")
	if fi, err := os.Stat(filepath.Join(repo, blockmap.ReserveFileName)); err != nil || fi.Size() == 0 {
		t.Errorf("no reserve after init: %v", err)
	}
	// Three points, each overwriting the same 6 MiB: forgetting the
	// first two releases their bytes.
	for i := range 3 {
		writeRandom(t, img, 0, 6<<20, uint64(i+1))
		mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", "--time", time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC).Format(time.RFC3339), img)
	}
	want := fileSHA(t, img)
	fillFilesystem(t, mnt)

	res := runCairn(t, nil, "--repo", repo, "forget", "--vm", "vm1", "--point", "1")
	if res.code != 0 || !strings.Contains(res.stdout, "1 point deleted") {
		t.Fatalf("forget on a full filesystem: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "released the space reserve") {
		t.Errorf("forget did not say it used the reserve:\n%s", res.stderr)
	}
	fillFilesystem(t, mnt)
	res = runCairn(t, nil, "--repo", repo, "prune", "--keep-last", "1")
	if res.code != 0 || !strings.Contains(res.stdout, "1 point deleted") {
		t.Fatalf("prune on a full filesystem: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil || st.Bavail*uint64(st.Bsize) < 4<<20 {
		t.Errorf("prune released %d bytes, want most of the 6 MiB of a deleted point (%v)", st.Bavail*uint64(st.Bsize), err)
	}
	if pts := listPoints(t, repo, "vm1"); len(pts) != 1 {
		t.Fatalf("%d points left, want 1", len(pts))
	}
	mustCairn(t, "--repo", repo, "verify")
	out := filepath.Join(dir, "out.img")
	mustCairn(t, "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", out)
	if got := fileSHA(t, out); got != want {
		t.Error("the kept point does not export as the source")
	}
}

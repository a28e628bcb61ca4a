package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// mountSmall mounts a fresh ext4 of sizeMiB (no blocks reserved for
// root) and returns its mount point; it is unmounted at the end.
func mountSmall(t *testing.T, sizeMiB int64) string {
	t.Helper()
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	makeImage(t, img, sizeMiB<<20)
	for _, c := range [][]string{{"mkfs.ext4", "-q", "-m", "0", "-F", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

// fillTo takes the free space of dir's filesystem down to about leave
// bytes with a preallocated file, and returns that file's path (remove
// it to free the space again).
func fillTo(t *testing.T, dir string, leave int64) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bfree) * st.Bsize
	if free <= leave {
		t.Fatalf("%s has %d bytes free, fewer than the %d to leave", dir, free, leave)
	}
	p := filepath.Join(dir, "filler")
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Fallocate(fd, 0, 0, free-leave); err != nil {
		t.Fatal(err)
	}
	return p
}

// requireNoSpaceAdvice asserts a failed run whose one-line error names
// the full filesystem (its mount point) and the fixes.
func requireNoSpaceAdvice(t *testing.T, res cairnResult, mnt string) {
	t.Helper()
	requireOneLineError(t, res, "no space left on device")
	for _, want := range []string{"the filesystem mounted at " + mnt, "free space there", "larger filesystem"} {
		if !strings.Contains(res.stderr, want) {
			t.Fatalf("the error does not say %q:\n%s", want, res.stderr)
		}
	}
}

func diskFull(t *testing.T, f *crashFixture) {
	// export to a full filesystem: a clear error, no file at the output's
	// name (a file that was there stays as it was), no temporary file;
	// once there is room the same export succeeds.
	t.Run("export", func(t *testing.T) {
		mnt := mountSmall(t, 48)
		out := filepath.Join(mnt, "vm1.img")
		if err := os.WriteFile(out, []byte("an older file\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		filler := fillTo(t, mnt, 8<<20)
		args := []string{"--repo", f.repo, "export", "--vm", "vm1", "--point", "5", "--disk", "d0", out}
		requireNoSpaceAdvice(t, runCairn(t, nil, args...), mnt)
		if b, err := os.ReadFile(out); err != nil || string(b) != "an older file\n" {
			t.Fatalf("a failed export changed or removed the file at its output's name: %q %v", b, err)
		}
		if left := partialsUnder(t, mnt); len(left) > 0 {
			t.Fatalf("a failed export left %v", left)
		}
		os.Remove(filler)
		mustCairn(t, args...)
		if fileSHA(t, out) != f.hashes[5] {
			t.Fatal("export after space was freed wrote wrong bytes")
		}
		if left := partialsUnder(t, mnt); len(left) > 0 {
			t.Fatalf("export left %v", left)
		}
	})

	// restore-file to a full filesystem: the files that fit are whole,
	// the one that did not is not there at all; the summary names the
	// filesystem; once there is room the same restore completes.
	t.Run("restore-file", func(t *testing.T) {
		mnt := mountSmall(t, 48)
		dest := filepath.Join(mnt, "out")
		filler := fillTo(t, mnt, 12<<20) // two of the three 8 MiB files fit
		args := []string{"--repo", f.repo, "restore-file", "--vm", "g", "--disk", "sda", "--part", "whole", "/", dest}
		res := runCairn(t, nil, args...)
		if res.code == 0 || !strings.Contains(res.stderr, "for want of space") || !strings.Contains(res.stderr, "the filesystem mounted at "+mnt) {
			t.Fatalf("restore-file to a full filesystem: exit %d\n%s", res.code, res.stderr)
		}
		whole := 0
		for _, rel := range []string{"a.bin", "sub/b.bin", "sub/deeper/c.bin", "small.txt"} {
			p := filepath.Join(dest, rel)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if fileSHA(t, p) != fileSHA(t, filepath.Join(f.guest, rel)) {
				t.Fatalf("%s is there after a restore that ran out of space, but is not the guest's file", rel)
			}
			whole++
		}
		if whole == 0 || whole == 4 {
			t.Fatalf("%d of 4 files restored to a filesystem with room for some", whole)
		}
		if left := partialsUnder(t, mnt); len(left) > 0 {
			t.Fatalf("a failed restore left %v", left)
		}
		os.Remove(filler)
		mustCairn(t, args...)
		for _, rel := range []string{"a.bin", "sub/b.bin", "sub/deeper/c.bin", "small.txt"} {
			if fileSHA(t, filepath.Join(dest, rel)) != fileSHA(t, filepath.Join(f.guest, rel)) {
				t.Fatalf("%s restored wrong once there was room", rel)
			}
		}
	})

	// import into a repository on a full filesystem: a clear error, no
	// new point, the point before unchanged; the next import succeeds.
	t.Run("import", func(t *testing.T) {
		mnt := mountSmall(t, 64)
		repo := filepath.Join(mnt, "repo")
		src := filepath.Join(t.TempDir(), "disk.img")
		makeImage(t, src, 32<<20)
		writeRandom(t, src, 0, 4<<20, 1)
		mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
		mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
		want := pointHashes(t, repo, "vm1", "d0")
		filler := fillTo(t, mnt, 2<<20)
		writeRandom(t, src, 0, 16<<20, 2)
		requireNoSpaceAdvice(t, runCairn(t, nil, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src), mnt)
		if got := pointHashes(t, repo, "vm1", "d0"); len(got) != 1 || got[1] != want[1] {
			t.Fatalf("after an import that ran out of space: points %v, want the one before unchanged", got)
		}
		if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 {
			t.Fatalf("verify after a full filesystem: %s%s", res.stdout, res.stderr)
		}
		os.Remove(filler)
		mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
		if exportSHA(t, repo, "vm1", "latest", "d0") != fileSHA(t, src) {
			t.Fatal("import after space was freed stored wrong bytes")
		}
		checkClean(t, repo)
	})

	// The index on a filesystem of its own that fills: Badger writes its
	// log through a memory map, where a full filesystem is a SIGBUS that
	// killed cairn with a goroutine dump; it must be a clear error, and
	// nothing committed may change.
	t.Run("index cannot grow", func(t *testing.T) {
		repo := f.copyRepo(t)
		index := filepath.Join(repo, "index")
		saved := filepath.Join(t.TempDir(), "index")
		if err := os.Rename(index, saved); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(index, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", index).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", index).Run() })
		sh(t, "cp", "-a", saved+"/.", index+"/")
		// Shrink it to what the index holds and 8 KiB more.
		var st unix.Statfs_t
		if err := unix.Statfs(index, &st); err != nil {
			t.Fatal(err)
		}
		used := int64(st.Blocks-st.Bfree) * st.Bsize
		if out, err := exec.Command("mount", "-o", "remount,size="+itoa(used+8<<10), index).CombinedOutput(); err != nil {
			t.Fatalf("remount: %v %s", err, out)
		}
		src := filepath.Join(t.TempDir(), "disk.img")
		makeImage(t, src, 64<<20)
		writeRandom(t, src, 0, 60<<20, 3)
		res := runCairn(t, nil, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
		if strings.Contains(res.stderr, "fatal error") || strings.Contains(res.stderr, "SIGBUS") {
			t.Fatalf("import with a full index filesystem crashed (exit %d):\n%.600s", res.code, res.stderr)
		}
		requireNoSpaceAdvice(t, res, index)
		f.checkCommitted(t, repo, "after an import whose index could not grow")
		if out, err := exec.Command("mount", "-o", "remount,size=64m", index).CombinedOutput(); err != nil {
			t.Fatalf("remount: %v %s", err, out)
		}
		mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
		if exportSHA(t, repo, "vm1", "latest", "d0") != fileSHA(t, src) {
			t.Fatal("import once the index had room stored wrong bytes")
		}
		checkClean(t, repo)
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

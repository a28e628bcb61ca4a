package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sparseImage(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// mountImage mounts img on mnt with the given command (a loop mount may
// be missing locally: skipped then, a failure under CI) and returns the
// unmount function; the mount is also dropped when the test ends.
func mountImage(t *testing.T, img, mnt string, cmd ...string) (unmount func()) {
	t.Helper()
	if out, err := exec.Command(cmd[0], append(cmd[1:], img, mnt)...).CombinedOutput(); err != nil {
		if testutil.InCI() || cmd[0] != "mount" {
			t.Fatalf("%v: %v %s", cmd, err, out)
		}
		t.Skipf("no loop mount here: %v %s", err, out)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	return func() {
		run(t, "umount", mnt)
		mounted = false
	}
}

// openImage opens the filesystem of a whole image file.
func openImage(t *testing.T, img []byte) partinfo.Filesystem {
	t.Helper()
	r := bytes.NewReader(img)
	d := partinfo.Detect(r, 0, int64(len(img)))
	fsys, err := fsopen.Open(r, 0, int64(len(img)), d)
	if err != nil {
		t.Fatalf("open %s image: %v", d.Type, err)
	}
	return fsys
}

// restore runs restoreTree and returns the report lines.
func restore(t *testing.T, fsys partinfo.Filesystem, src, dest string, failFast bool) (restoreReport, string, error) {
	t.Helper()
	var rep bytes.Buffer
	r, err := restoreTree(t.Context(), fsys, src, dest, restoreOptions{failFast: failFast, report: &rep})
	return r, rep.String(), err
}

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ntfsTime(tm time.Time) []byte {
	ft := uint64(tm.Unix()+11644473600)*1e7 + uint64(tm.Nanosecond()/100)
	b := make([]byte, 32)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(b[8*i:], ft)
	}
	return b
}

// TestRestoreFileNTFSLongNamesAndTimes restores an NTFS tree (made through
// ntfs-3g) holding a 750-byte CJK name, which no Linux filesystem takes,
// and times of 1601 and 2300: everything else is restored, the long name
// gets a deterministic short one listed in the report, times are exact.
func TestRestoreFileNTFSLongNamesAndTimes(t *testing.T) {
	testutil.RequireTools(t, "mkntfs", "ntfs-3g", "umount")
	testutil.RequireFUSE(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "n.img")
	mnt := filepath.Join(dir, "mnt")
	mustT(t, os.Mkdir(mnt, 0o755))
	sparseImage(t, img, 32<<20)
	run(t, "mkntfs", "-F", "-Q", "-q", img)
	unmount := mountImage(t, img, mnt, "ntfs-3g")
	long := strings.Repeat("漢", 250) // 250 UTF-16 units, 750 bytes of UTF-8
	mustT(t, os.MkdirAll(filepath.Join(mnt, "tree", "sub"), 0o755))
	mustT(t, os.WriteFile(filepath.Join(mnt, "tree", long), []byte("long name"), 0o644))
	for i := 0; i < 20; i++ {
		mustT(t, os.WriteFile(filepath.Join(mnt, "tree", "sub", fmt.Sprintf("f%02d", i)), []byte(fmt.Sprint(i)), 0o644))
	}
	times := map[string]time.Time{
		"y1601.txt": time.Date(1601, 1, 1, 0, 0, 1, 0, time.UTC),
		"y2300.txt": time.Date(2300, 1, 1, 12, 0, 0, 0, time.UTC),
	}
	for name, tm := range times {
		p := filepath.Join(mnt, "tree", name)
		mustT(t, os.WriteFile(p, []byte(name), 0o644))
		mustT(t, unix.Setxattr(p, "system.ntfs_times", ntfsTime(tm), 0))
	}
	unmount()
	raw, err := os.ReadFile(img)
	mustT(t, err)
	fsys := openImage(t, raw)

	dest := filepath.Join(t.TempDir(), "out")
	rep, lines, err := restore(t, fsys, "tree", dest, false)
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, lines)
	}
	if rep.failed != 0 || rep.restored != 2+20+1+2 || rep.renamed != 1 {
		t.Errorf("report %+v, want 25 restored, 1 renamed, none failed\n%s", rep, lines)
	}
	short := restoreName(long)
	if len(short) > nameMax || short == long || restoreName(long) != short {
		t.Fatalf("short name %q (%d bytes)", short, len(short))
	}
	if got, want := rep.summary(dest), "restored 25 (1 renamed), failed 0, skipped 0 to "+dest; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if !strings.Contains(lines, "RENAMED /tree/"+long+" -> "+short) {
		t.Errorf("report does not list the renamed entry:\n%s", lines)
	}
	if b, err := os.ReadFile(filepath.Join(dest, short)); err != nil || string(b) != "long name" {
		t.Errorf("renamed file: %q, %v", b, err)
	}
	for i := 0; i < 20; i++ {
		if b, err := os.ReadFile(filepath.Join(dest, "sub", fmt.Sprintf("f%02d", i))); err != nil || string(b) != fmt.Sprint(i) {
			t.Errorf("sub/f%02d: %q, %v", i, b, err)
		}
	}
	// 1601 is older than the local filesystem may hold (ext4 stops at
	// 1901); 2300 fits everywhere but wrapped to 1715 through os.Chtimes.
	for name, want := range map[string]time.Time{"y2300.txt": times["y2300.txt"]} {
		st, err := os.Stat(filepath.Join(dest, name))
		mustT(t, err)
		if !st.ModTime().Equal(want) {
			t.Errorf("%s: mtime %v, want %v", name, st.ModTime().UTC(), want)
		}
	}

	// --fail-fast keeps the old behaviour: the first failure stops it.
	// A 255-byte limit is met by shortening, so provoke a failure with
	// an unwritable destination directory instead.
	ro := filepath.Join(t.TempDir(), "ro")
	mustT(t, os.Mkdir(ro, 0o755))
	mustT(t, os.WriteFile(filepath.Join(ro, "sub"), nil, 0o644)) // "sub" cannot become a directory
	_, lines, err = restore(t, fsys, "tree", ro, true)
	if err == nil || strings.Count(lines, "FAILED") != 1 {
		t.Errorf("--fail-fast: err %v, report:\n%s", err, lines)
	}
	rep, lines, err = restore(t, fsys, "tree", filepath.Join(t.TempDir(), "ro2"), false)
	if err != nil || rep.failed != 0 {
		t.Errorf("second restore: %v %+v\n%s", err, rep, lines)
	}
}

// TestRestoreFileExt4SpecialFilesAndDamage restores a kernel-made ext4
// tree with a FIFO, device nodes, a symlink with an old mtime and a file
// whose inode is corrupt: the corrupt one is reported, everything else
// restored, special files created (as root), the symlink's mtime kept.
func TestRestoreFileExt4SpecialFilesAndDamage(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4", "debugfs", "mount", "umount")
	testutil.RequireRoot(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "e.img")
	mnt := filepath.Join(dir, "mnt")
	mustT(t, os.Mkdir(mnt, 0o755))
	sparseImage(t, img, 16<<20)
	run(t, "mkfs.ext4", "-q", "-I", "256", img)
	unmount := mountImage(t, img, mnt, "mount", "-o", "loop")
	tree := filepath.Join(mnt, "tree")
	mustT(t, os.Mkdir(tree, 0o755))
	mustT(t, unix.Mkfifo(filepath.Join(tree, "fifo"), 0o640))
	mustT(t, unix.Mknod(filepath.Join(tree, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	mustT(t, unix.Mknod(filepath.Join(tree, "loopdev"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	mustT(t, os.WriteFile(filepath.Join(tree, "target.txt"), []byte("target"), 0o644))
	mustT(t, os.Symlink("target.txt", filepath.Join(tree, "link")))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	mustT(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(tree, "link"), []unix.Timespec{timespec(old), timespec(old)}, unix.AT_SYMLINK_NOFOLLOW))
	future := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	mustT(t, os.WriteFile(filepath.Join(tree, "future.txt"), []byte("future"), 0o644))
	mustT(t, unix.UtimesNano(filepath.Join(tree, "future.txt"), []unix.Timespec{timespec(future), timespec(future)}))
	mustT(t, os.WriteFile(filepath.Join(tree, "victim.txt"), []byte("corrupt me"), 0o644))
	for i := 0; i < 5; i++ {
		mustT(t, os.WriteFile(filepath.Join(tree, fmt.Sprintf("ok%d", i)), []byte("fine"), 0o644))
	}
	unmount()

	// Wreck the victim's inode (its mode and checksum no longer agree).
	out := run(t, "debugfs", "-R", "imap /tree/victim.txt", img)
	m := regexp.MustCompile(`located at block (\d+), offset (0x[0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("debugfs imap: %s", out)
	}
	blk, _ := strconv.ParseInt(m[1], 10, 64)
	off, _ := strconv.ParseInt(m[2], 0, 64)
	raw, err := os.ReadFile(img)
	mustT(t, err)
	at := blk*1024 + off // mkfs.ext4 uses 1 KiB blocks on a 16 MiB image
	if bs := 1024 << binary.LittleEndian.Uint32(raw[1024+24:]); bs != 1024 {
		at = blk*int64(bs) + off
	}
	for i := int64(0); i < 16; i++ {
		raw[at+i] ^= 0xA5
	}
	fsys := openImage(t, raw)

	dest := filepath.Join(t.TempDir(), "out")
	rep, lines, err := restore(t, fsys, "tree", dest, false)
	if err != nil {
		t.Fatalf("restore stopped: %v\n%s", err, lines)
	}
	if rep.failed != 1 || !strings.Contains(lines, "FAILED /tree/victim.txt: ") {
		t.Errorf("report %+v, want exactly victim.txt failed:\n%s", rep, lines)
	}
	if _, err := os.Lstat(filepath.Join(dest, "victim.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a half-restored victim.txt is left behind: %v", err)
	}
	for i := 0; i < 5; i++ {
		if b, err := os.ReadFile(filepath.Join(dest, fmt.Sprintf("ok%d", i))); err != nil || string(b) != "fine" {
			t.Errorf("ok%d: %q %v", i, b, err)
		}
	}
	for name, want := range map[string]struct {
		typ  uint32
		rdev uint64
	}{"fifo": {unix.S_IFIFO, 0}, "null": {unix.S_IFCHR, unix.Mkdev(1, 3)}, "loopdev": {unix.S_IFBLK, unix.Mkdev(7, 200)}} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dest, name), &st); err != nil {
			t.Errorf("%s not restored: %v", name, err)
			continue
		}
		if st.Mode&unix.S_IFMT != want.typ || st.Rdev != want.rdev {
			t.Errorf("%s: mode %o rdev %d:%d, want type %o rdev %d:%d", name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev),
				want.typ, unix.Major(want.rdev), unix.Minor(want.rdev))
		}
	}
	if st, err := os.Lstat(filepath.Join(dest, "link")); err != nil || !st.ModTime().Equal(old) {
		t.Errorf("symlink mtime: %v, %v; want %v", st.ModTime(), err, old)
	}
	if st, err := os.Stat(filepath.Join(dest, "future.txt")); err != nil || !st.ModTime().Equal(future) {
		t.Errorf("future.txt mtime: %v, %v; want %v", st.ModTime(), err, future)
	}
}

// TestRestoreFileFATCycle restores a FAT tree whose subdirectory was
// edited to point back at its parent's cluster: the cycle is reported
// and the restore finishes.
func TestRestoreFileFATCycle(t *testing.T) {
	testutil.RequireTools(t, "mkfs.vfat", "mcopy")
	src := t.TempDir()
	mustT(t, os.MkdirAll(filepath.Join(src, "A", "B"), 0o755))
	mustT(t, os.WriteFile(filepath.Join(src, "A", "B", "inner.txt"), []byte("inner"), 0o644))
	mustT(t, os.WriteFile(filepath.Join(src, "A", "a.txt"), []byte("a"), 0o644))
	img := filepath.Join(t.TempDir(), "f.img")
	sparseImage(t, img, 8<<20)
	run(t, "mkfs.vfat", "-F", "16", "-s", "1", img)
	cmd := exec.Command("mcopy", "-s", "-i", img, filepath.Join(src, "A"), "::/")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v %s", err, out)
	}
	raw, err := os.ReadFile(img)
	mustT(t, err)
	v := openImage(t, raw)
	aIno, err := v.Lookup(v.Root(), "A")
	mustT(t, err)
	bIno, err := v.Lookup(aIno, "B")
	mustT(t, err)
	// B's short entry (its inode is its byte offset) now names A's cluster.
	copy(raw[bIno+26:bIno+28], raw[aIno+26:aIno+28])
	fsys := openImage(t, raw)

	dest := filepath.Join(t.TempDir(), "out")
	rep, lines, err := restore(t, fsys, ".", dest, false)
	if err != nil {
		t.Fatalf("restore stopped: %v\n%s", err, lines)
	}
	if rep.failed != 1 || !strings.Contains(lines, "directory cycle") {
		t.Errorf("report %+v, want one directory cycle:\n%s", rep, lines)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "A", "a.txt")); err != nil || string(b) != "a" {
		t.Errorf("A/a.txt: %q %v", b, err)
	}
}

// TestRestoreFileHugeSparseFinishes restores an XFS file of 2^63-1 bytes
// (legal on XFS, made by the kernel with truncate) next to a normal one:
// the restore finishes, the huge file is either restored sparse or
// reported with the local filesystem's reason, never read as endless zeros.
func TestRestoreFileHugeSparseFinishes(t *testing.T) {
	testutil.RequireTools(t, "mkfs.xfs", "mount", "umount")
	testutil.RequireRoot(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	mnt := filepath.Join(dir, "mnt")
	mustT(t, os.Mkdir(mnt, 0o755))
	sparseImage(t, img, 320<<20)
	run(t, "mkfs.xfs", "-q", img)
	unmount := mountImage(t, img, mnt, "mount", "-o", "loop")
	mustT(t, os.WriteFile(filepath.Join(mnt, "huge"), []byte("head"), 0o644))
	mustT(t, os.Truncate(filepath.Join(mnt, "huge"), 1<<63-1))
	mustT(t, os.WriteFile(filepath.Join(mnt, "normal"), []byte("normal"), 0o644))
	unmount()
	raw, err := os.ReadFile(img)
	mustT(t, err)
	fsys := openImage(t, raw)
	dest := filepath.Join(t.TempDir(), "out")
	rep, lines, err := restore(t, fsys, ".", dest, false)
	if err != nil {
		t.Fatalf("restore stopped: %v\n%s", err, lines)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "normal")); err != nil || string(b) != "normal" {
		t.Errorf("normal: %q %v", b, err)
	}
	if rep.failed == 1 {
		if !strings.Contains(lines, "FAILED /huge: ") {
			t.Errorf("failure does not name the file:\n%s", lines)
		}
	} else if st, err := os.Stat(filepath.Join(dest, "huge")); err != nil || st.Size() != 1<<63-1 {
		t.Errorf("huge restored as %v, %v\n%s", st, err, lines)
	}
}

package xfs

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
)

// crashedXFS builds an XFS image the way a crash-consistent snapshot of a
// running guest looks: files written through a kernel mount, synced (data
// and log on disk, metadata not yet written back), more changes synced,
// then the filesystem shut down with its log flushed, so that the
// metadata of many changes lives only in the log. xfs_logprint must call
// the log dirty, or the recipe no longer does what the test needs.
func crashedXFS(t testing.TB, size int64, files int) string {
	testutil.RequireTools(t, "xfs_io", "xfs_logprint", "setfattr")
	img := makeImage(t, size)
	mnt, unmount := mountImage(t, img)
	w := func(rel, content string) {
		p := filepath.Join(mnt, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("old/kept.txt", "written before the first sync\n")
	w("old/removed.txt", "removed later\n")
	run(t, "sync")
	for i := 0; i < files; i++ { // 600: a directory in node form
		w(fmt.Sprintf("big/file-with-a-longer-name-%04d.txt", i), fmt.Sprintf("file %d\n", i))
	}
	w("new/data.bin", strings.Repeat("0123456789abcdef", 70000))
	os.Symlink("../old/kept.txt", filepath.Join(mnt, "new/link"))
	os.Symlink(strings.Repeat("long-target/", 30), filepath.Join(mnt, "new/longlink"))
	os.Remove(filepath.Join(mnt, "old/removed.txt"))
	os.Rename(filepath.Join(mnt, "big/file-with-a-longer-name-0007.txt"), filepath.Join(mnt, "new/renamed.txt"))
	os.Chmod(filepath.Join(mnt, "new/data.bin"), 0o600)
	os.Chown(filepath.Join(mnt, "new/data.bin"), 1001, 1002)
	run(t, "setfattr", "-n", "user.note", "-v", "logged", filepath.Join(mnt, "new/renamed.txt"))
	os.Mkdir(filepath.Join(mnt, "new/emptydir"), 0o750)
	run(t, "sync")
	w("last/after-sync.txt", "data not synced: the file exists, its bytes may not\n")
	run(t, "xfs_io", "-x", "-c", "shutdown -f", mnt)
	unmount()
	out, err := exec.Command("xfs_logprint", "-t", img).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("DIRTY")) {
		t.Fatalf("the fixture's log is not dirty (xfs_logprint: %v):\n%.2000s", err, out)
	}
	return img
}

// treeOf describes every entry of fsys: type, mode, owner, size, mtime,
// links, content hash, link target and xattrs.
func treeOf(t *testing.T, fsys fs.FS, lxattrs func(string) string) map[string]string {
	out := map[string]string{}
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			out[p] = "error: " + err.Error()
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			out[p] = "error: " + err.Error()
			return nil
		}
		desc := fmt.Sprintf("%v size=%d mtime=%d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			b, err := fs.ReadFile(fsys, p)
			desc += fmt.Sprintf(" sha=%x err=%v", sha256.Sum256(b), err)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := fs.ReadLink(fsys, p)
			desc += fmt.Sprintf(" -> %q %v", l, err)
		}
		out[p] = desc + " " + lxattrs(p)
		return nil
	})
	return out
}

func diffTrees(want, got map[string]string) []string {
	var diffs []string
	for p, w := range want {
		if g := got[p]; g != w {
			diffs = append(diffs, fmt.Sprintf("%s:\n  kernel: %s\n  reader: %s", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: only the reader has it: %s", p, g))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// TestLogReplayMatchesKernel checks that a crashed XFS, read with its log
// replayed in memory, shows exactly what the kernel shows after its own
// log recovery (on a copy), and that without the replay it would not.
func TestLogReplayMatchesKernel(t *testing.T) {
	t.Run("node directory", func(t *testing.T) { compareReplayWithKernel(t, crashedXFS(t, 320<<20, 600), 600) })
	t.Run("wrapped log", func(t *testing.T) { compareReplayWithKernel(t, wrappedLogXFS(t), 100) })
}

// wrappedLogXFS churns an XFS with an 8 MiB log until the log has wrapped
// (the tail lies after the head), then shuts it down like crashedXFS.
func wrappedLogXFS(t *testing.T) string {
	testutil.RequireTools(t, "xfs_io", "xfs_logprint", "xargs", "touch")
	img := makeImage(t, 128<<20, "-l", "size=8m")
	mnt, unmount := mountImage(t, img)
	for r := 1; r <= 40; r++ {
		d := filepath.Join(mnt, fmt.Sprintf("r%d", r))
		os.Mkdir(d, 0o755)
		run(t, "sh", "-c", fmt.Sprintf(`cd %s && seq 1 800 | sed 's/^/file-with-a-long-name-/' | xargs touch`, d))
		run(t, "sync")
		os.RemoveAll(filepath.Join(mnt, fmt.Sprintf("r%d", r-1)))
	}
	os.Mkdir(filepath.Join(mnt, "final"), 0o755)
	for i := 0; i < 100; i++ {
		os.WriteFile(filepath.Join(mnt, "final", fmt.Sprintf("x%d", i)), []byte(fmt.Sprintf("%d\n", i)), 0o644)
	}
	run(t, "sync")
	run(t, "xfs_io", "-x", "-c", "shutdown -f", mnt)
	unmount()
	out, _ := exec.Command("xfs_logprint", "-t", img).CombinedOutput()
	var tail, head, cycle int
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "log tail:") {
			fmt.Sscanf(l, "log tail: %d head: %d", &tail, &head)
		}
		var c int
		if n, _ := fmt.Sscanf(l, "LOG REC AT LSN cycle %d", &c); n == 1 {
			cycle = max(cycle, c)
		}
	}
	// The log has been written round at least once (cycle 2 or more);
	// whether the live part straddles its end (tail after head) depends
	// on when metadata was written back.
	if !bytes.Contains(out, []byte("DIRTY")) || cycle < 2 {
		t.Fatalf("the fixture's log is not dirty and wrapped (cycle %d, tail %d, head %d):\n%.1000s", cycle, tail, head, out)
	}
	t.Logf("log cycle %d, tail %d, head %d", cycle, tail, head)
	return img
}

func compareReplayWithKernel(t *testing.T, img string, minEntries int) {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fsys, err := Open(f, 0, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	n, lerr := fsys.(*xfs).LogReplay()
	if n == 0 || lerr != nil {
		t.Fatalf("LogReplay = %d transactions, %v; want the dirty log replayed", n, lerr)
	}
	if info := fsys.Info(); !strings.Contains(info.Recovered, "log replayed") {
		t.Errorf("Info().Recovered = %q", info.Recovered)
	}
	readerX := func(fsys partinfo.Filesystem) func(string) string {
		return func(p string) string {
			xs, err := partinfo.AsFS(fsys).(partinfo.XattrFS).LXattrs(p)
			var s []string
			for _, x := range xs {
				s = append(s, fmt.Sprintf("%s=%x", x.Name, x.Value))
			}
			return fmt.Sprint(s, err)
		}
	}
	got := treeOf(t, partinfo.AsFS(fsys), readerX(fsys))

	// The kernel's view: mount a copy, which recovers the log.
	dir := t.TempDir()
	cp := filepath.Join(dir, "copy.img")
	if out, err := exec.Command("cp", "--sparse=always", img, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "loop", cp, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	kernelX := func(p string) string {
		buf := make([]byte, 1<<16)
		full := filepath.Join(mnt, p)
		n, err := unix.Llistxattr(full, buf)
		var s []string
		for _, name := range strings.Split(string(buf[:max(n, 0)]), "\x00") {
			if name == "" {
				continue
			}
			v := make([]byte, 1<<16)
			m, _ := unix.Lgetxattr(full, name, v)
			s = append(s, fmt.Sprintf("%s=%x", name, v[:max(m, 0)]))
		}
		_ = err
		return fmt.Sprint(s, nil)
	}
	want := treeOf(t, os.DirFS(mnt), kernelX)
	// os.DirFS gives no owner; add owners to both sides.
	for p := range want {
		var s syscall.Stat_t
		if syscall.Lstat(filepath.Join(mnt, p), &s) == nil {
			want[p] += fmt.Sprintf(" uid=%d gid=%d nlink=%d", s.Uid, s.Gid, s.Nlink)
		}
	}
	gfs := partinfo.AsFS(fsys)
	for p := range got {
		if fi, err := fs.Lstat(gfs, p); err == nil {
			a := fi.Sys().(partinfo.Attr)
			got[p] += fmt.Sprintf(" uid=%d gid=%d nlink=%d", a.Uid, a.Gid, a.Nlink)
		}
	}
	if d := diffTrees(want, got); len(d) > 0 {
		t.Errorf("%d entries differ from the kernel's recovered view:\n%s", len(d), strings.Join(append(d[:min(len(d), 5)], d[max(5, len(d)-5):]...), "\n"))
	}
	if len(want) < minEntries {
		t.Fatalf("kernel shows only %d entries", len(want))
	}
	t.Logf("%d entries equal to the kernel's recovered view after replaying %d transactions", len(want), n)

	// Without the replay the reader would miss most of it.
	stale, err := open(f, 0, st.Size(), false)
	if err == nil {
		if d := diffTrees(want, treeOf(t, partinfo.AsFS(stale), readerX(stale))); len(d) == 0 {
			t.Fatalf("the image reads the same without log replay: the fixture does not exercise the log")
		}
	}
}

// TestCleanLogAfterUnmountNotReplayed: a cleanly unmounted XFS whose
// unmount record carries a tail before itself (the usual case after a
// few metadata changes: the tail LSN is stamped before the unmount
// record is written) needs no recovery, as xfs_logprint and the kernel
// (xlog_check_unmount_rec) say. It used to be reported as recovered
// ("log replayed: 1 transactions") and its last transaction replayed.
func TestCleanLogAfterUnmountNotReplayed(t *testing.T) {
	testutil.RequireTools(t, "xfs_logprint", "setfattr")
	img := makeImage(t, 320<<20)
	mnt, unmount := mountImage(t, img)
	for i := 0; i < 20; i++ {
		p := filepath.Join(mnt, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%d", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "setfattr", "-n", "user.n", "-v", fmt.Sprint(i), p)
	}
	unmount()
	out, err := exec.Command("xfs_logprint", "-t", img).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("<CLEAN>")) {
		t.Fatalf("xfs_logprint does not call the log clean (%v):\n%s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys, err := Open(f, 0, 320<<20)
	if err != nil {
		t.Fatal(err)
	}
	n, lerr := fsys.(interface{ LogReplay() (int, error) }).LogReplay()
	if n != 0 || lerr != nil {
		t.Fatalf("LogReplay = %d transactions, %v on a cleanly unmounted XFS; want 0, nil", n, lerr)
	}
}

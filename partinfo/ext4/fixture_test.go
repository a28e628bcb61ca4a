package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runCmd runs a command and fails the test with its output on error.
func runCmd(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// ramDir returns a fresh tmpfs mounted inside t.TempDir(), so that images
// and source trees do not hit the (slow, shared) disk.
func ramDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ram")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runCmd(t, "mount", "-t", "tmpfs", "-o", "size=3g", "cairn-ext4-test", dir)
	t.Cleanup(func() { runCmd(t, "umount", dir) })
	return dir
}

// makeImage creates a sparse image file of size bytes and runs mkfs on it.
func makeImage(t testing.TB, img string, size int64, mkfs string, args ...string) {
	t.Helper()
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	runCmd(t, mkfs, append(append([]string{"-q", "-F"}, args...), img)...)
}

// loopMount mounts img at a fresh directory and unmounts it at cleanup
// (or earlier, through the returned function).
func loopMount(t testing.TB, img string, readOnly bool) (mnt string, unmount func()) {
	t.Helper()
	mnt = filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if !readOnly {
		runCmd(t, "mount", "-o", "loop", img, mnt)
	} else if err := exec.Command("mount", "-o", "loop,ro,noload", img, mnt).Run(); err != nil {
		// noload (never replay the journal) is refused where there is none.
		runCmd(t, "mount", "-o", "loop,ro", img, mnt)
	}
	done := false
	unmount = func() {
		if !done {
			done = true
			runCmd(t, "umount", mnt)
		}
	}
	t.Cleanup(unmount)
	return mnt, unmount
}

// openImage opens img with this package's reader.
func openImage(t testing.TB, img string) *FS {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Open(fh, 0, st.Size())
	if err != nil {
		t.Fatalf("Open %s: %v", img, err)
	}
	return fsys.(*FS)
}

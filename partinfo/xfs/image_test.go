package xfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// run runs a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	// Lets mkfs.xfs make images below its 300 MB floor (the fstests escape).
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// makeImage creates a sparse image of size bytes and formats it with
// mkfs.xfs and the given extra options.
func makeImage(t testing.TB, size int64, mkfsArgs ...string) string {
	t.Helper()
	testutil.RequireTools(t, "mkfs.xfs", "mount", "umount")
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "xfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "mkfs.xfs", append(append([]string{"-q", "-f"}, mkfsArgs...), img)...)
	return img
}

// mountImage loop-mounts img (with extra mount options) and returns the
// mount point; the returned function unmounts it (also run at cleanup).
func mountImage(t testing.TB, img string, opts ...string) (string, func()) {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"-o", strings.Join(append([]string{"loop"}, opts...), ",")}, img, dir)
	// Loop device setup can race with other tests (or fuzz workers)
	// attaching loop devices at the same moment: retry a few times.
	for attempt := 1; ; attempt++ {
		out, err := exec.Command("mount", args...).CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 5 {
			t.Fatalf("mount %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	mounted := true
	unmount := func() {
		if mounted {
			mounted = false
			run(t, "umount", dir)
		}
	}
	t.Cleanup(func() {
		if mounted {
			mounted = false
			_ = exec.Command("umount", dir).Run()
		}
	})
	return dir, unmount
}

// openImage opens img with the reader under test.
func openImage(t testing.TB, img string) *xfs {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Open(f, 0, st.Size())
	if err != nil {
		t.Fatalf("open %s: %v", img, err)
	}
	return fsys.(*xfs)
}

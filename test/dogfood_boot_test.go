package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBootCLIResults walks `cairn boot` and `cairn verify-boot` on a point
// that cannot boot (an empty disk: SeaBIOS says so in about a second):
// a boot that cannot start leaves no working directory behind, and
// verify-boot --json names the kept screenshot and serial log (it used to
// print the path of a working file it had just removed) with the VM, the
// point and the results directory.
func TestBootCLIResults(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "empty.img")
	makeImage(t, src, 16<<20)
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "e1", "--disk", "d0", src)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{"TMPDIR=" + tmp}

	t.Run("boot that cannot start", func(t *testing.T) {
		res := runCairn(t, env, "--repo", repo, "boot", "--vm", "e1")
		if res.code == 0 || !strings.Contains(res.stderr, "--firmware") {
			t.Fatalf("boot of a point without configuration: exit %d, %q", res.code, res.stderr)
		}
		left, _ := filepath.Glob(filepath.Join(tmp, "cairn-boot-*"))
		if len(left) != 0 {
			t.Fatalf("a boot that never started left %v", left)
		}
	})
	t.Run("verify-boot json", func(t *testing.T) {
		testutil.RequireTools(t, "qemu-system-x86_64", "qemu-img")
		res := runCairn(t, env, "--repo", repo, "verify-boot", "--vm", "e1", "--firmware", "bios", "--timeout", "3m", "--settle", "30s", "--json")
		if res.code == 0 {
			t.Fatalf("verify-boot of an empty disk exited 0: %s", res.stdout)
		}
		var out struct {
			VM, Point, Dir, Verdict, Screenshot string
			SerialLog                           string `json:"serial_log"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
			t.Fatalf("verify-boot --json: %v: %q", err, res.stdout)
		}
		if out.Verdict != "failed" || out.VM != "e1" || out.Point == "" {
			t.Fatalf("verify-boot --json: %+v", out)
		}
		want := filepath.Join(repo, "bootchecks", "e1", out.Point)
		if out.Dir != want {
			t.Errorf("dir %q, want %q", out.Dir, want)
		}
		for _, f := range []string{out.Screenshot, out.SerialLog} {
			if filepath.Dir(f) != want {
				t.Errorf("%q is not kept in %s", f, want)
			}
			if _, err := os.Stat(f); err != nil {
				t.Errorf("file named by --json: %v", err)
			}
		}
		left, _ := filepath.Glob(filepath.Join(tmp, "cairn-*-*"))
		if len(left) != 0 {
			t.Errorf("verify-boot left %v", left)
		}
	})
}

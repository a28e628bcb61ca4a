package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	t.Run("verify-boot interrupted keeps no verdict", func(t *testing.T) {
		testutil.RequireTools(t, "qemu-system-x86_64", "qemu-img")
		// a boot sector that spins (jmp $): no verdict before --settle
		spin := filepath.Join(dir, "spin.img")
		makeImage(t, spin, 1<<20)
		f, err := os.OpenFile(spin, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{0xeb, 0xfe}, 0)
		f.WriteAt([]byte{0x55, 0xaa}, 510)
		f.Close()
		mustCairn(t, "--repo", repo, "import", "--vm", "spin", "--disk", "d0", spin)
		cmd := exec.Command(buildCairn(t), "--repo", repo, "verify-boot", "--vm", "spin", "--firmware", "bios", "--timeout", "5m", "--settle", "5m")
		cmd.Env = append(os.Environ(), env...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// running: qemu started and SeaBIOS wrote to the serial console
		running := func() bool {
			logs, _ := filepath.Glob(filepath.Join(tmp, "cairn-verify-boot-*", "serial.log"))
			fi, err := os.Stat(strings.Join(logs, ""))
			return childQEMU(cmd.Process.Pid) != 0 && len(logs) == 1 && err == nil && fi.Size() > 0
		}
		for deadline := time.Now().Add(60 * time.Second); !running(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("verify-boot never started qemu")
			}
		}
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err == nil {
			t.Fatal("an interrupted verify-boot exited 0")
		}
		kept, _ := filepath.Glob(filepath.Join(repo, "bootchecks", "spin", "*", "result.json"))
		if len(kept) != 0 {
			data, _ := os.ReadFile(kept[0])
			t.Fatalf("an interrupted verify-boot kept a verdict: %s", data)
		}
	})
	t.Run("boot keep-overlay says they are kept", func(t *testing.T) {
		testutil.RequireTools(t, "qemu-system-x86_64", "qemu-img")
		if _, err := os.Stat(filepath.Join(dir, "spin.img")); err != nil {
			t.Skip("needs the spin point of the subtest before")
		}
		keep := filepath.Join(dir, "keep")
		cmd := exec.Command(buildCairn(t), "--repo", repo, "boot", "--vm", "spin", "--firmware", "bios", "--keep-overlay", keep)
		cmd.Env = append(os.Environ(), env...)
		stderr := &serveLogBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "powers it off"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("boot never said the machine is up: %s", stderr.String())
			}
		}
		if r := runCairn(t, env, "--repo", repo, "boot", "--stop", "--vm", "spin"); r.code != 0 {
			t.Fatalf("boot --stop: %s", r.stderr)
		}
		cmd.Wait()
		out := stderr.String()
		ov := filepath.Join(keep, "d0.qcow2")
		if strings.Contains(out, "overlays removed") || !strings.Contains(out, "overlays kept in "+keep) ||
			!strings.Contains(out, "--disk d0 --socket "+filepath.Join(keep, "nbd0.sock")) {
			t.Fatalf("boot --keep-overlay said:\n%s", out)
		}
		fi, err := os.Stat(ov)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("kept overlay %s: %v %v, want mode 0600", ov, fi, err)
		}
		info, _ := exec.Command("qemu-img", "info", "--output=json", ov).Output()
		if !strings.Contains(string(info), "socket="+filepath.Join(keep, "nbd0.sock")) {
			t.Fatalf("overlay backing is not the socket said: %s", info)
		}
	})
	t.Run("boot stopped while starting", func(t *testing.T) {
		testutil.RequireTools(t, "qemu-system-x86_64", "qemu-img")
		if _, err := os.Stat(filepath.Join(dir, "spin.img")); err != nil {
			t.Skip("needs the spin point of the subtest before")
		}
		cmd := exec.Command(buildCairn(t), "--repo", repo, "boot", "--vm", "spin", "--firmware", "bios")
		cmd.Env = append(os.Environ(), env...)
		stderr := &serveLogBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// the state file is written before the machine starts: --stop now
		// most likely lands while qemu is starting
		state := filepath.Join(tmp, "cairn-boot", "spin.pid")
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(state); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("cairn boot wrote no state file")
			}
		}
		runCairn(t, env, "--repo", repo, "boot", "--stop", "--vm", "spin")
		if err := cmd.Wait(); err != nil || strings.Contains(stderr.String(), "qemu failed") {
			t.Fatalf("boot stopped on request: %v:\n%s", err, stderr.String())
		}
		if left, _ := filepath.Glob(filepath.Join(tmp, "cairn-boot-*")); len(left) != 0 {
			t.Errorf("a stopped boot left %v", left)
		}
	})
}

package test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestNBDExportCLI: cairn nbd-export serves a point that qemu-img reads
// back identical, stops on SIGTERM, and refuses a busy port and an
// unknown disk with clear errors.
func TestNBDExportCLI(t *testing.T) {
	testutil.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	src := filepath.Join(dir, "d.img")
	makeImage(t, src, 16<<20)
	writeRandom(t, src, 4<<20, 1<<20, 3)
	mustCairn(t, "--repo", repo, "import", "--vm", "v", "--disk", "d0", src)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	res := runCairn(t, nil, "--repo", repo, "nbd-export", "--vm", "v", "--disk", "d0", "--listen", busy.Addr().String())
	if res.code == 0 || !strings.Contains(res.stderr, "already in use") {
		t.Errorf("busy port: %d %q", res.code, res.stderr)
	}
	res = runCairn(t, nil, "--repo", repo, "nbd-export", "--vm", "v", "--disk", "nope", "--socket", filepath.Join(dir, "s"))
	if res.code == 0 || !strings.Contains(res.stderr, `"nope"`) || !strings.Contains(res.stderr, "d0") {
		t.Errorf("unknown disk: %d %q", res.code, res.stderr)
	}
	res = runCairn(t, nil, "--repo", repo, "nbd-export", "--vm", "v", "--point", "99", "--disk", "d0")
	if res.code == 0 || !strings.Contains(res.stderr, "99") {
		t.Errorf("unknown point: %d %q", res.code, res.stderr)
	}

	sock := filepath.Join(dir, "nbd.sock")
	cmd := exec.Command(buildCairn(t), "--repo", repo, "nbd-export", "--vm", "v", "--disk", "d0", "--socket", sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	uri, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(uri, "nbd+unix://") {
		t.Fatalf("no URI printed: %q %v", uri, err)
	}
	if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", src, strings.TrimSpace(uri)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare: %v %s", err, b)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("nbd-export after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nbd-export did not stop on SIGTERM")
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("socket left behind")
	}
}

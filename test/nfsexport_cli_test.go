package test

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestNFSExportCLI: `cairn nfs-export` prints each disk's nfs:// URL;
// libnfs's nfs-cp reads the disk byte-exact against `cairn export`; a
// second export of another point on the same --session-dir is refused.
func TestNFSExportCLI(t *testing.T) {
	testutil.RequireTools(t, "nfs-cp")
	dir := t.TempDir()
	repo := cliRepo(t)
	img := filepath.Join(dir, "disk.img")
	b := make([]byte, 32<<20)
	rand.Read(b[3<<20 : 5<<20])
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "import", "--vm", "nfsvm", "--disk", "scsi0-0", img)
	mustCairn(t, "--repo", repo, "import", "--vm", "nfsvm", "--disk", "scsi0-0", img)
	exported := filepath.Join(dir, "exported.img")
	mustCairn(t, "--repo", repo, "export", "--vm", "nfsvm", "--disk", "scsi0-0", exported)

	session := filepath.Join(dir, "session")
	url, _ := startNFSExport(t, "--repo", repo, "nfs-export", "--vm", "nfsvm", "--point", "1", "--listen", "127.0.0.1:0",
		"--portmap", "off", "--session-dir", session)
	if !strings.HasPrefix(url, "nfs://127.0.0.1/cairn/scsi0-0-flat.vmdk?nfsport=") {
		t.Fatalf("URL %q", url)
	}
	copied := filepath.Join(dir, "copied.img")
	if out, err := exec.Command("nfs-cp", url, copied).CombinedOutput(); err != nil {
		t.Fatalf("nfs-cp: %v %s", err, out)
	}
	want, _ := os.ReadFile(exported)
	got, _ := os.ReadFile(copied)
	if !bytes.Equal(got, want) {
		t.Errorf("the disk over NFS (%d bytes) differs from cairn export (%d bytes)", len(got), len(want))
	}
	// the session belongs to point 1: point 2 on it is refused with the fix
	r := runCairn(t, nil, "--repo", repo, "nfs-export", "--vm", "nfsvm", "--point", "2", "--listen", "127.0.0.1:0",
		"--portmap", "off", "--session-dir", session)
	if r.code == 0 || !strings.Contains(r.stderr, "--session-dir") {
		t.Errorf("another point on the session: exit %d: %s", r.code, r.stderr)
	}
}

// startNFSExport runs `cairn ARGS` (an nfs-export), stopped with Ctrl-C
// when the test ends, and returns the first URL it prints and its stderr.
func startNFSExport(t *testing.T, args ...string) (url string, stderr *serveLogBuffer) {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	var stdout serveLogBuffer
	stderr = &serveLogBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return strings.TrimSpace(strings.SplitN(stdout.String(), "\n", 2)[0]), stderr
}

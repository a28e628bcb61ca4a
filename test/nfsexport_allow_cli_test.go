package test

import (
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestNFSExportCLIAllow: `cairn nfs-export` answers this machine only
// unless --allow names other clients: libnfs connecting from this
// machine's non-loopback address is refused (and the log says so), then
// taken by an export with --allow ADDR; a bad --allow is refused with an
// example.
func TestNFSExportCLIAllow(t *testing.T) {
	testutil.RequireTools(t, "nfs-cp")
	var ip string
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				ip = n.IP.String()
				break
			}
		}
	}
	if ip == "" {
		testutil.Missing(t, "a non-loopback IPv4 address on this machine")
	}
	dir := t.TempDir()
	repo := cliRepo(t)
	img := filepath.Join(dir, "disk.img")
	b := make([]byte, 8<<20)
	rand.Read(b[1<<20 : 2<<20])
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "import", "--vm", "allowvm", "--disk", "d0", img)

	export := func(session string, extra ...string) (string, *serveLogBuffer) {
		url, stderr := startNFSExport(t, append([]string{"--repo", repo, "nfs-export", "--vm", "allowvm", "--listen", "0.0.0.0:0",
			"--portmap", "off", "--session-dir", filepath.Join(dir, session)}, extra...)...)
		return strings.Replace(url, "nfs://127.0.0.1/", "nfs://"+ip+"/", 1), stderr
	}
	url, stderr := export("s1")
	if out, err := exec.Command("nfs-cp", url, filepath.Join(dir, "refused.img")).CombinedOutput(); err == nil {
		t.Errorf("nfs-cp from %s was served without --allow:\n%s", ip, out)
	}
	if !strings.Contains(stderr.String(), "not in the allow list") {
		t.Errorf("the refusal is not logged:\n%s", stderr.String())
	}
	url, _ = export("s2", "--allow", ip+"/32")
	copied := filepath.Join(dir, "copied.img")
	if out, err := exec.Command("nfs-cp", url, copied).CombinedOutput(); err != nil {
		t.Fatalf("nfs-cp from %s with --allow %s: %v\n%s", ip, ip, err, out)
	}
	if got, _ := os.ReadFile(copied); string(got) != string(b) {
		t.Errorf("the disk over NFS differs from the imported image")
	}
	r := runCairn(t, nil, "--repo", repo, "nfs-export", "--vm", "allowvm", "--listen", "127.0.0.1:0", "--portmap", "off",
		"--session-dir", filepath.Join(dir, "s3"), "--allow", "esxi01")
	if r.code == 0 || !strings.Contains(r.stderr, "--allow") || !strings.Contains(r.stderr, "10.0.0.0/24") {
		t.Errorf("--allow esxi01: exit %d: %s", r.code, r.stderr)
	}
}

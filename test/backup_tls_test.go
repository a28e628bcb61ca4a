package test

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBackupNBDTLS backs a VM up through an NBD server that requires TLS
// (nbdkit --tls=require with a test CA), started from --nbd-command, with
// the CA given by --nbd-tls-ca; without it the backup fails clearly and
// stores nothing.
func TestBackupNBDTLS(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim, env := cliSim(t)
	repo := cliRepo(t)
	g, _ := sim.Guest("app")
	if _, err := g.WriteRandomBlocks(0, 30, esxsim.BlockSize, rand.New(rand.NewPCG(5, 6))); err != nil {
		t.Fatal(err)
	}
	certs := t.TempDir()
	testutil.WriteTLSCerts(t, certs)
	args := []string{"--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--vm", "app",
		"--transport", "nbd", "--nbd-command", "nbdkit -t 1 -U {socket} -f -r --tls=require --tls-certificates=" + certs + " file {disk_local_path}",
		"--nbd-retries", "1"}
	res := runCairn(t, env, args...)
	if res.code == 0 || !strings.Contains(res.stderr, "TLS") {
		t.Fatalf("backup without the CA: exit %d, stdout %s stderr %s", res.code, res.stdout, res.stderr)
	}
	if pts := listPoints(t, repo, "app"); len(pts) != 0 {
		t.Fatalf("a failed backup stored %d points", len(pts))
	}
	mustCairnEnv(t, env, append(args, "--nbd-tls-ca", filepath.Join(certs, "ca-cert.pem"))...)
	pts := listPoints(t, repo, "app")
	if len(pts) != 1 {
		t.Fatalf("%d points after the TLS backup, want 1", len(pts))
	}
	for i, img := range runningImages(t, sim, "app") {
		name := diskNames(t, sim, "app")[i]
		if got := exportSHA(t, repo, "app", "latest", name); got != fmt.Sprintf("%x", sha256.Sum256(img)) {
			t.Errorf("disk %s of the TLS backup differs from the VM's disk", name)
		}
	}
}

package test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRestoreVMRemote: a backed-up VM is replicated; a fresh repository
// that holds no point (only the remote's configuration) restores it with
// `restore vm --remote`, through nfc and through nbd: the VM is created
// from the remote point's vm/config.json and every disk equals the point
// byte for byte; --in-place with --remote is refused with advice.
func TestRestoreVMRemote(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	f := newRemoteFixture(t)
	sim := esxsimtest.Start(t, esxsim.Options{DVPortgroups: 1, VMs: restoreVMs()})
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	repoDir := cliRepo(t)
	g, _ := sim.Guest("efivm")
	if _, err := g.WriteRandomBlocks(0, 100, esxsim.BlockSize, rand.New(rand.NewPCG(7, 8))); err != nil {
		t.Fatal(err)
	}
	if r := runCairn(t, env, "--repo", repoDir, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--vm", "efivm", "--transport", "file"); r.code != 0 {
		t.Fatalf("backup: %s", r.stderr)
	}
	f.add(t, repoDir, "off")
	mustCairn(t, "--repo", repoDir, "remote", "init", "off")
	mustCairn(t, "--repo", repoDir, "replicate", "--remote", "off")

	repo2 := filepath.Join(t.TempDir(), "repo2")
	mustCairn(t, "--repo", repo2, "init")
	f.add(t, repo2, "off")
	for _, tc := range []struct{ name, transport string }{{"efi-nfc", backupd.WriteTransportNFC}, {"efi-nbd", backupd.WriteTransportNBD}} {
		r := runCairn(t, env, "--repo", repo2, "restore", "vm", "--remote", "off", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
			"--vm", "efivm", "--nbd-command", restoreNBDCommand, "--transport", tc.transport, "--name", tc.name, "--network", "VM Network=DC0_DVPG0", "--json")
		if r.code != 0 {
			t.Fatalf("restore vm --remote (%s): %s", tc.transport, r.stderr)
		}
		var res backupd.RestoreResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.VM != tc.name || len(res.Disks) != 2 || res.Disks[0].Transport != tc.transport {
			t.Fatalf("restore output %q: %v", r.stdout, err)
		}
	}
	if r := runCairn(t, env, "--repo", repo2, "restore", "vm", "--remote", "off", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
		"--vm", "efivm", "--in-place"); r.code == 0 || !strings.Contains(r.stderr, "cairn pull --remote") {
		t.Fatalf("restore vm --in-place --remote: exit %d, %s", r.code, r.stderr)
	}
	if pts := listPoints(t, repo2, "efivm"); len(pts) != 0 {
		t.Fatalf("restore --remote committed points to the repository: %v", pts)
	}
	repo, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	p := latestPoint(t, repo, "efivm")
	for _, name := range []string{"efi-nfc", "efi-nbd"} {
		files, err := sim.DiskLocalPaths(name)
		if err != nil || len(files) != len(p.Disks) {
			t.Fatalf("%s: disk files %v %v, point has %d disks", name, files, err, len(p.Disks))
		}
		for _, d := range p.Disks {
			sameAsPoint(t, repo, p, d.Name, files[d.Name])
		}
	}
}

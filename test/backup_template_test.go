package test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBackupNBDTemplatePlaceholders backs a VM up through an --nbd-command
// that uses every placeholder: a script records what it was given (and
// the password file's content and mode) and waits while the test looks at
// the VM's snapshots, then serves the disk with qemu-nbd. Every value must
// be the one the production VDDK command needs, and the snapshot must be
// named cairn-<job id>.
func TestBackupNBDTemplatePlaceholders(t *testing.T) {
	testutil.RequireTools(t, "qemu-nbd")
	sim := esxsimtest.Start(t, esxsim.Options{NumVMs: 1, DisksPerVM: 1, DiskSize: 8 << 20})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	g, _ := sim.Guest("vm1")
	if _, err := g.WriteRandomBlocks(0, 20, esxsim.BlockSize, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args, goFile := filepath.Join(dir, "args"), filepath.Join(dir, "go")
	script := filepath.Join(dir, "serve.sh")
	body := "#!/bin/sh\n" +
		"for a in \"$@\"; do printf '%s\\n' \"$a\"; done > " + args + ".tmp\n" +
		"cat \"$4\" >> " + args + ".tmp; echo >> " + args + ".tmp; stat -c %a \"$4\" >> " + args + ".tmp\n" +
		"mv " + args + ".tmp " + args + "\n" +
		"while [ ! -e " + goFile + " ]; do sleep 0.05; done\n" +
		"exec qemu-nbd -r -f raw --persistent -k \"$1\" \"$9\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	names := []string{"socket", "server", "user", "password_file", "thumbprint", "vm_moref", "snapshot_moref", "disk_file", "disk_local_path", "vm", "disk"}
	tmpl := script
	for _, n := range names {
		tmpl += " {" + n + "}"
	}
	// While the script waits, list the VM's snapshots.
	var during []string
	var frozen []esxsim.SnapshotDisk
	seen := make(chan struct{})
	go func() {
		defer close(seen)
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(args); err == nil {
				during = vmSnapshots(t, conn, sim, "vm1")
				frozen, _ = sim.SnapshotDisks(lastSnapshot(sim, "vm1"))
				os.WriteFile(goFile, nil, 0o644)
				return
			}
		}
	}()
	res, err := backupd.BackupVM(context.Background(), repo, conn, "vm1", backupd.JobOptions{
		Transports: []string{"nbd"}, NBDCommand: tmpl,
		Credentials: vsphere.Credentials{User: "backup@vsphere.local", Password: "s3cret {pw}"}, Thumbprint: sim.Thumbprint,
	})
	<-seen
	if err != nil {
		t.Fatal(err)
	}
	checkPoint(t, repo, res.Point, diskNames(t, sim, "vm1"), runningImages(t, sim, "vm1"))

	data, err := os.ReadFile(args)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != len(names)+2 {
		t.Fatalf("script got %d lines, want %d: %q", len(lines), len(names)+2, lines)
	}
	got := map[string]string{}
	for i, n := range names {
		got[n] = lines[i]
	}
	ref, _ := sim.VMRef("vm1")
	snapRef := lastSnapshot(sim, "vm1")
	if len(frozen) != 1 {
		t.Fatalf("frozen disks of snapshot %s during the backup: %+v", snapRef.Value, frozen)
	}
	tp, _ := vsphere.NormalizeThumbprint(sim.Thumbprint)
	want := map[string]string{
		"server": sim.URL.Hostname(), "user": "backup@vsphere.local", "thumbprint": tp,
		"vm_moref": ref.Value, "snapshot_moref": snapRef.Value, "vm": "vm1", "disk": res.Disks[0].Name,
		"disk_file": frozen[0].FileName, "disk_local_path": frozen[0].LocalPath,
	}
	for n, w := range want {
		if got[n] != w || w == "" {
			t.Errorf("{%s} = %q, want %q", n, got[n], w)
		}
	}
	if !strings.HasSuffix(got["socket"], ".sock") || !strings.HasPrefix(got["password_file"], filepath.Dir(got["socket"])) {
		t.Errorf("{socket} %q and {password_file} %q: want both in the server's private directory", got["socket"], got["password_file"])
	}
	if pw, mode := lines[len(names)], lines[len(names)+1]; pw != "s3cret {pw}" || mode != "600" {
		t.Errorf("password file holds %q with mode %s, want the password with mode 600", pw, mode)
	}
	if _, err := os.Stat(got["password_file"]); !os.IsNotExist(err) {
		t.Errorf("password file %s left after the backup (%v)", got["password_file"], err)
	}
	if len(during) != 1 || during[0] != vsphere.SnapshotPrefix+res.JobID {
		t.Errorf("snapshots during the backup %q, want one named %s%s", during, vsphere.SnapshotPrefix, res.JobID)
	}
	if left := vmSnapshots(t, conn, sim, "vm1"); len(left) != 0 {
		t.Errorf("snapshots left: %q", left)
	}
}

// lastSnapshot is the newest snapshot taken of vm, from the simulator's
// journal.
func lastSnapshot(sim *esxsim.Sim, vm string) types.ManagedObjectReference {
	var ref types.ManagedObjectReference
	for _, e := range sim.Journal() {
		if e.Op == esxsim.OpSnapshot && e.VM == vm {
			ref = types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: e.Snapshot}
		}
	}
	return ref
}

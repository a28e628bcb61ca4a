package test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

var _ backupd.InstantHypervisor = (*vsphere.Conn)(nil)

// instantListeners are an instant session's NFS, MOUNT and portmapper
// listeners on 127.0.0.1 (the simulator asks the portmapper given here,
// not port 111).
func instantListeners(t *testing.T, sim *esxsim.Sim, req *backupd.InstantRequest) {
	t.Helper()
	var err error
	for _, l := range []*net.Listener{&req.NFS, &req.Mount, &req.Portmap} {
		if *l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	sim.SetNFSPortmapper(req.Portmap.Addr().String())
	req.RemoteHost = "127.0.0.1"
}

// pointDiskHash hashes a disk of a point.
func pointDiskHash(t *testing.T, repo *blockmap.Repo, p blockmap.Point, disk string) string {
	t.Helper()
	dr, err := repo.OpenDisk(context.Background(), p, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	b, err := io.ReadAll(io.NewSectionReader(dr, 0, dr.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func vmPowerState(t *testing.T, conn *vsphere.Conn, name string) types.VirtualMachinePowerState {
	t.Helper()
	ref, err := conn.LookupVM(context.Background(), name)
	if err != nil {
		t.Fatalf("VM %s: %v", name, err)
	}
	st, err := object.NewVirtualMachine(conn.Client, ref).PowerState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nfsWrite writes b at off of a file of the export, as the running VM would.
func nfsWrite(t *testing.T, addr, file string, off int64, b []byte) {
	t.Helper()
	c, err := esxsim.DialRPC(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &nfsc.Mount{Client: c}
	target, err := m.Mount("/cairn", rpc.AuthNull)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	f, err := target.OpenFile(file, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestInstantRecovery runs a backed-up VM from its point through the NFS
// export on the simulated vCenter: mount, register, power on (the
// simulator reads the disks through NFS), a guest write that lands in the
// overlay, Storage vMotion to datastore1 (the simulator copies the disks
// through NFS) and the session's end; then a session that is stopped,
// and the failures: a host that refuses the mount, a registration that
// fails, an export that dies, a point without a VM configuration.
func TestInstantRecovery(t *testing.T) {
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
	ctx := context.Background()
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	p, err := repo.ResolvePoint(ctx, "efivm", "latest")
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, d := range p.Disks {
		before[d.Name] = pointDiskHash(t, repo, p, d.Name)
	}
	conn := connectSim(t, sim)
	networks := map[string]string{"VM Network": "DC0_DVPG0"}
	request := func(name string) backupd.InstantRequest {
		req := backupd.InstantRequest{Point: p, PowerOn: true, SessionDir: filepath.Join(t.TempDir(), "session"),
			Create: vsphere.CreateSpec{Name: name, Networks: networks}}
		instantListeners(t, sim, &req)
		return req
	}
	noLeftovers := func(what, vm string) {
		t.Helper()
		if ds := sim.NASDatastores(); len(ds) != 0 {
			t.Errorf("%s: NFS datastores left: %+v", what, ds)
		}
		if _, err := conn.LookupVM(ctx, vm); !errors.Is(err, vsphere.ErrVMNotFound) {
			t.Errorf("%s: VM %s left: %v", what, vm, err)
		}
	}

	// run and migrate
	req := request("efi-instant")
	s, err := backupd.StartInstant(ctx, repo, conn, req, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	nas := sim.NASDatastores()
	if len(nas) != 1 || nas[0].Name != "cairn-efivm-"+p.ID || nas[0].RemoteHost != "127.0.0.1" || nas[0].RemotePath != "/cairn" || s.Datastore != nas[0].Name {
		t.Fatalf("NFS datastore: %+v (session %q)", nas, s.Datastore)
	}
	if st := vmPowerState(t, conn, "efi-instant"); st != types.VirtualMachinePowerStatePoweredOn {
		t.Fatalf("instant VM is %s", st)
	}
	// the guest writes 8 KiB at 1 MiB of its first disk
	first := p.Disks[0].Name
	pattern := []byte(strings.Repeat("instant!", 1024))
	flat := ""
	for _, f := range must(os.ReadDir(filepath.Join(req.SessionDir, "files"))) {
		if strings.HasSuffix(f.Name(), ".vmdk") && strings.Contains(string(must(os.ReadFile(filepath.Join(req.SessionDir, "files", f.Name())))), "disk "+first) {
			flat = strings.TrimSuffix(f.Name(), ".vmdk") + "-flat.vmdk"
		}
	}
	if flat == "" {
		t.Fatalf("no descriptor of disk %s in the session", first)
	}
	nfsWrite(t, req.NFS.Addr().String(), flat, 1<<20, pattern)
	if err := s.Migrate(ctx, "datastore1"); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if ds := sim.NASDatastores(); len(ds) != 0 {
		t.Errorf("after migrate the NFS datastore is still mounted: %+v", ds)
	}
	if st := vmPowerState(t, conn, "efi-instant"); st != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("migrated VM is %s", st)
	}
	moved, err := os.ReadFile(filepath.Join(sim.DatastoreDir, "efi-instant", strings.TrimSuffix(flat, "-flat.vmdk")+"-flat.vmdk"))
	if err != nil {
		t.Fatalf("migrated disk on datastore1: %v", err)
	}
	dr, err := repo.OpenDisk(ctx, p, first)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, dr.Size())
	if _, err := dr.ReadAt(want, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	dr.Close()
	copy(want[1<<20:], pattern)
	if len(moved) != len(want) || sha256.Sum256(moved) != sha256.Sum256(want) {
		t.Errorf("the migrated disk is not the point with the guest's write (%d bytes, want %d)", len(moved), len(want))
	}
	inc, err := conn.IncompleteRestores(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range inc {
		if r.Name == "efi-instant" {
			t.Errorf("the migrated VM still carries the restore marker")
		}
	}
	if _, err := os.Stat(req.SessionDir); !os.IsNotExist(err) {
		t.Errorf("session directory after migrate: %v", err)
	}
	if err := s.Stop(ctx); !errors.Is(err, backupd.ErrSessionEnded) {
		t.Errorf("stop after migrate: %v", err)
	}

	// run and stop
	req = request("efi-stop")
	s, err = backupd.StartInstant(ctx, repo, conn, req, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	nfsWrite(t, req.NFS.Addr().String(), flat, 0, pattern)
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	noLeftovers("stop", "efi-stop")
	if _, err := os.Stat(req.SessionDir); !os.IsNotExist(err) {
		t.Errorf("session directory after stop: %v", err)
	}
	if _, err := net.Dial("tcp", req.NFS.Addr().String()); err == nil {
		t.Errorf("the export still answers after stop")
	}

	// the host refuses the mount: nothing is left, the error says so
	sim.RefuseNAS("Unable to connect to NFS server")
	req = request("efi-refused")
	_, err = backupd.StartInstant(ctx, repo, conn, req, nil)
	if !errors.Is(err, vsphere.ErrNFSMount) || !strings.Contains(err.Error(), "Unable to connect to NFS server") {
		t.Errorf("refused mount: %v", err)
	}
	noLeftovers("refused mount", "efi-refused")
	sim.RefuseNAS("")

	// registering fails (a network that does not exist): the datastore is removed again
	req = request("efi-badnet")
	req.Create.Networks = map[string]string{"VM Network": "no-such-network"}
	var logs strings.Builder
	if _, err = backupd.StartInstant(ctx, repo, conn, req, slog.New(slog.NewTextHandler(&logs, nil))); err == nil || !strings.Contains(err.Error(), "no-such-network") {
		t.Errorf("registration with a missing network: %v", err)
	}
	if !strings.Contains(logs.String(), "NFS datastore mounted") {
		t.Errorf("the registration did not fail after the mount (nothing to remove was made):\n%s", logs.String())
	}
	noLeftovers("failed registration", "efi-badnet")

	// the export dies mid-session: the session says so; power-on through the
	// dead export fails, stop still removes everything
	req = request("efi-dies")
	req.PowerOn = false
	s, err = backupd.StartInstant(ctx, repo, conn, req, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	req.NFS.Close()
	if err := <-s.Failed(); err == nil || !strings.Contains(err.Error(), "NFS server") {
		t.Errorf("export failure: %v", err)
	}
	ref, _ := conn.LookupVM(ctx, "efi-dies")
	if err := conn.PowerOn(ctx, ref); err == nil || !strings.Contains(err.Error(), "Cannot open the disk") {
		t.Errorf("power on through a dead export: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("stop after the export died: %v", err)
	}
	noLeftovers("dead export", "efi-dies")

	// the job log has every step with its result (kind instant)
	recs, err := backupd.NewJobLog(repoDir).List()
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, r := range recs {
		if r.Kind != backupd.JobInstant {
			continue
		}
		step := fmt.Sprintf("%s %s %s", r.Action, r.Target, r.State)
		if r.VM != "efivm" || r.Point != p.ID || r.End.IsZero() {
			t.Errorf("instant record %s: %+v", step, r)
		}
		switch {
		case r.Action == "migrate" && (r.Datastore != "datastore1" || r.BytesWritten < int64(len(pattern))):
			t.Errorf("migrate record: datastore %q, %d bytes written (want datastore1, >= %d)", r.Datastore, r.BytesWritten, len(pattern))
		case r.Action == "stop" && r.Target == "efi-stop" && r.BytesWritten < int64(len(pattern)):
			t.Errorf("stop record: %d bytes written, want >= %d", r.BytesWritten, len(pattern))
		case r.State == backupd.JobFailed && r.Error == "":
			t.Errorf("failed record %s without its error", step)
		case r.Action == "start" && r.State == backupd.JobOK && !strings.HasPrefix(r.Datastore, "cairn-efivm-"):
			t.Errorf("start record %s: datastore %q", step, r.Datastore)
		}
		steps = append(steps, step)
	}
	wantSteps := []string{"start efi-instant ok", "migrate efi-instant ok", "start efi-stop ok", "stop efi-stop ok",
		"start efi-refused failed", "start efi-badnet failed", "start efi-dies ok", "stop efi-dies ok"}
	if strings.Join(steps, "\n") != strings.Join(wantSteps, "\n") {
		t.Errorf("instant job records:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(wantSteps, "\n"))
	}

	// the point stays byte-identical through all of it
	for _, d := range p.Disks {
		if got := pointDiskHash(t, repo, p, d.Name); got != before[d.Name] {
			t.Errorf("disk %s of the point changed", d.Name)
		}
	}
	rep, err := repo.Verify(ctx, blockmap.VerifyOptions{VM: "efivm"})
	if err != nil || !rep.OK() {
		t.Errorf("verify: %v %+v", err, rep)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

package test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRestoreVMEachPoint backs up a BIOS and an EFI VM three times (guest
// writes in between), restores every point as a new VM through each write
// transport (nbd: nbdkit file on the new disk's flat file; hotadd: the new
// disk attached to the proxy VM and written as its device) and checks
// that each new VM's disks equal the point byte for byte, that only the
// point's data travelled (bytes written = data bytes of the point), and
// that its configuration matches with the network mapped and a new
// identity; the restore is in the job log.
func TestRestoreVMEachPoint(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim := esxsimtest.Start(t, esxsim.Options{DVPortgroups: 1, VMs: restoreVMs(), ProxyVM: "proxy"})
	conn := connectSim(t, sim)
	ctx := context.Background()
	repo := newTestRepo(t)
	rng := rand.New(rand.NewPCG(7, 8))
	vms := []string{"biosvm", "efivm"}
	for gen := 0; gen < 3; gen++ {
		for _, vm := range vms {
			scribble(t, sim, vm, rng)
			if _, err := backupd.BackupVM(ctx, repo, conn, vm, backupd.JobOptions{Transports: []string{"file"}}); err != nil {
				t.Fatalf("backup %s: %v", vm, err)
			}
		}
	}
	for _, vm := range vms {
		pts, err := repo.Points(ctx, vm)
		if err != nil || len(pts) != 3 {
			t.Fatalf("points of %s: %d %v", vm, len(pts), err)
		}
		for i, p := range pts {
			for _, tr := range []string{backupd.WriteTransportNFC, backupd.WriteTransportNBD, backupd.WriteTransportHotAdd} {
				name := vm + "-r" + string(rune('0'+i)) + "-" + tr
				opts := restoreOpts(sim)
				opts.Transports, opts.ProxyVM, opts.HotAddDevice = []string{tr}, "proxy", simHotAdd(sim)
				logDir := t.TempDir()
				if tr == backupd.WriteTransportNBD { // the server logs every write it receives
					opts.NBDCommand = "nbdkit -t 1 -U {socket} -f --filter=log file {disk_local_path} logfile=" + logDir + "/{disk}.log"
				}
				req := backupd.RestoreRequest{Point: p, VCenter: sim.URL.Host, Create: vsphere.CreateSpec{
					Name: name, Networks: map[string]string{"VM Network": "DC0_DVPG0"},
				}}
				res, err := backupd.Restore(ctx, repo, backupd.NewVSphere(conn), req, opts)
				if err != nil {
					t.Fatalf("restore %s point %s through %s: %v", vm, p.ID, tr, err)
				}
				src, err := backupd.PointVMConfig(ctx, repo, p)
				if err != nil {
					t.Fatal(err)
				}
				files, err := sim.DiskLocalPaths(name)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Disks) != len(p.Disks) || len(files) != len(p.Disks) {
					t.Fatalf("%s: %d disks restored, %d files, point has %d", name, len(res.Disks), len(files), len(p.Disks))
				}
				for _, d := range res.Disks {
					sameAsPoint(t, repo, p, d.Name, files[d.Name])
					_, data := readPoint(t, repo, p, d.Name)
					if d.BytesWritten != data || d.Transport != tr {
						t.Errorf("%s disk %s: %d bytes written through %q, the point holds %d data bytes", name, d.Name, d.BytesWritten, d.Transport, data)
					}
				}
				if tr == backupd.WriteTransportNBD { // what the NBD server received
					var received, data int64
					for _, d := range res.Disks {
						_, n := readPoint(t, repo, p, d.Name)
						data += n
					}
					logs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
					for _, l := range logs {
						received += nbdkitLoggedWrites(t, l)
					}
					if len(logs) != len(res.Disks) || received != data {
						t.Errorf("%s: the NBD servers (%d logs) received %d bytes of writes, the point holds %d data bytes", name, len(logs), received, data)
					}
				}
				if tr == backupd.WriteTransportNFC { // what the simulator's lease received and converted
					var uploaded, data int64
					for _, e := range sim.Journal() {
						if e.Op == esxsim.OpNFCUpload && e.VM == name {
							uploaded += e.Length
						}
					}
					for _, d := range res.Disks {
						_, n := readPoint(t, repo, p, d.Name)
						data += n
					}
					if uploaded != data {
						t.Errorf("%s: the lease received %d bytes of grains, the point holds %d data bytes", name, uploaded, data)
					}
				}
				nc := restoredConfig(t, conn, name)
				checkRestoredConfig(t, src, nc)
			}
		}
	}
	if ref, err := conn.LookupVM(ctx, "proxy"); err != nil {
		t.Fatal(err)
	} else if pv, err := conn.LoadVM(ctx, ref); err != nil || len(pv.Disks) != 0 {
		t.Errorf("hotadd restores left disks on the proxy: %v %v", pv, err)
	}
	jobs, err := backupd.NewJobLog(repo.Dir()).List()
	if err != nil {
		t.Fatal(err)
	}
	restores := 0
	for _, j := range jobs {
		if j.Kind == backupd.JobRestore && j.State == backupd.JobOK && j.BytesWritten > 0 {
			restores++
		}
	}
	if restores != 18 {
		t.Errorf("job log holds %d finished restores, want 18", restores)
	}
}

// nbdkitLoggedWrites sums the count of every NBD_CMD_WRITE that nbdkit's
// log filter recorded in path.
func nbdkitLoggedWrites(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, m := range loggedWrite.FindAllSubmatch(b, -1) {
		v, err := strconv.ParseInt(string(m[1]), 0, 64)
		if err != nil {
			t.Fatal(err)
		}
		n += v
	}
	return n
}

var loggedWrite = regexp.MustCompile(` Write id=\d+ offset=0x[0-9a-f]+ count=(0x[0-9a-f]+)`)

func restoredConfig(t *testing.T, conn *vsphere.Conn, name string) vmconfig.Config {
	t.Helper()
	vm, err := conn.FindVM(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return vsphere.VMConfig(vm.Name, vm.Config)
}

// checkRestoredConfig compares a restored VM's configuration with the
// point's: hardware the same, identity new, networks mapped, no marker.
func checkRestoredConfig(t *testing.T, src *vmconfig.Config, got vmconfig.Config) {
	t.Helper()
	if got.Firmware != src.Firmware || got.SecureBoot != src.SecureBoot || got.CPUs != src.CPUs ||
		got.CoresPerSocket != src.CoresPerSocket || got.MemoryMB != src.MemoryMB || got.GuestID != src.GuestID {
		t.Errorf("%s: firmware %s/%v cpus %d/%d mem %d guest %s; point %s/%v %d/%d %d %s", got.Name,
			got.Firmware, got.SecureBoot, got.CPUs, got.CoresPerSocket, got.MemoryMB, got.GuestID,
			src.Firmware, src.SecureBoot, src.CPUs, src.CoresPerSocket, src.MemoryMB, src.GuestID)
	}
	if got.BIOSUUID == src.BIOSUUID || got.InstanceUUID == src.InstanceUUID {
		t.Errorf("%s kept the identity of the source (uuid %s)", got.Name, got.BIOSUUID)
	}
	if got.Annotation != src.Annotation && (src.Annotation != "" || !strings.HasPrefix(got.Annotation, "restored by cairn from ")) {
		t.Errorf("%s annotation %q, want %q", got.Name, got.Annotation, src.Annotation)
	}
	if _, ok := got.ExtraConfig[vsphere.RestoreMarkerKey]; ok {
		t.Errorf("%s still carries the restore marker", got.Name)
	}
	ctypes := func(c []vmconfig.Controller) map[string]int {
		m := map[string]int{}
		for _, x := range c {
			m[x.Type]++
		}
		return m
	}
	if a, b := ctypes(got.Controllers), ctypes(src.Controllers); len(a) != len(b) {
		t.Errorf("%s controllers %v, point %v", got.Name, a, b)
	} else {
		for k, v := range b {
			if a[k] != v {
				t.Errorf("%s controllers %v, point %v", got.Name, a, b)
			}
		}
	}
	if len(got.Disks) != len(src.Disks) {
		t.Fatalf("%s has %d disks, point %d", got.Name, len(got.Disks), len(src.Disks))
	}
	for i, d := range got.Disks {
		s := src.Disks[i]
		if d.Name != s.Name || d.Capacity != s.Capacity || d.Provisioning != s.Provisioning || d.ControllerType != s.ControllerType {
			t.Errorf("%s disk %+v, point %+v", got.Name, d, s)
		}
	}
	if len(got.NICs) != len(src.NICs) {
		t.Fatalf("%s has %d NICs, point %d", got.Name, len(got.NICs), len(src.NICs))
	}
	for i, n := range got.NICs {
		s := src.NICs[i]
		if n.AdapterType != s.AdapterType || n.MAC == s.MAC || !strings.HasPrefix(n.Network, "dvportgroup:") {
			t.Errorf("%s NIC %d %+v, point %+v (want the same type, a new MAC, network mapped to DC0_DVPG0)", got.Name, i, n, s)
		}
	}
	if len(got.CDROMs) != len(src.CDROMs) {
		t.Errorf("%s has %d CD-ROMs, point %d", got.Name, len(got.CDROMs), len(src.CDROMs))
	}
}

package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBackupPerHostCap backs up three VMs of one ESXi host with
// --parallel-vms 3 and a per-host cap of 1: no two VMs may be read at once.
func TestBackupPerHostCap(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{NumVMs: 3, DisksPerVM: 2, DiskSize: 8 << 20})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, vm := range []string{"vm1", "vm2", "vm3"} {
		g, _ := sim.Guest(vm)
		for d := 0; d < 2; d++ {
			if _, err := g.WriteRandomBlocks(d, 30, esxsim.BlockSize, rng); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	active := map[string]int{}
	maxVMs, maxDisks := 0, 0
	opts := backupd.JobOptions{Transports: []string{"file"}, ParallelDisks: 2,
		Progress: func(vm, disk string, total int64) (func(int64), func()) {
			mu.Lock()
			active[vm]++
			maxVMs = max(maxVMs, len(active))
			maxDisks = max(maxDisks, active[vm])
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // widen the window in which overlap would show
			return func(int64) {}, func() {
				mu.Lock()
				if active[vm]--; active[vm] == 0 {
					delete(active, vm)
				}
				mu.Unlock()
			}
		}}
	outs := backupd.BackupVMs(context.Background(), repo, conn, []string{"vm1", "vm2", "vm3"}, opts, backupd.ParallelOptions{VMs: 3, PerHost: 1})
	for _, o := range outs {
		if o.Err != nil {
			t.Fatalf("%s: %v", o.Spec, o.Err)
		}
		checkPoint(t, repo, o.Result.Point, diskNames(t, sim, o.Spec), runningImages(t, sim, o.Spec))
	}
	if maxVMs != 1 {
		t.Errorf("%d VMs of one host were read at once with a per-host cap of 1", maxVMs)
	}
	if maxDisks > 2 {
		t.Errorf("%d disks of one VM were read at once with --parallel-disks 2", maxDisks)
	}
}

// TestBackupParallelAcrossHosts backs up four VMs on two ESXi hosts with
// --parallel-vms 4 and --per-host 1: never two VMs of one host at once,
// but the two hosts' VMs at the same time (until that has been seen, a
// VM's disk waits up to 10 s for a VM of the other host to be read too).
func TestBackupParallelAcrossHosts(t *testing.T) {
	specs := []esxsim.VMSpec{}
	for i, host := range []int{0, 0, 1, 1} {
		specs = append(specs, esxsim.VMSpec{Name: fmt.Sprintf("h%d-vm%d", host, i), Host: host, Disks: []esxsim.DiskSpec{{Size: 4 << 20}}})
	}
	sim := esxsimtest.Start(t, esxsim.Options{Hosts: 2, VMs: specs})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	rng := rand.New(rand.NewPCG(9, 10))
	var names []string
	for _, s := range specs {
		g, _ := sim.Guest(s.Name)
		if _, err := g.WriteRandomBlocks(0, 10, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
		names = append(names, s.Name)
	}
	var mu sync.Mutex
	active := map[string]bool{} // VMs being read
	perHost, together := map[string]int{}, 0
	hostOf := func(vm string) string { return vm[:2] }
	otherHostActive := func(vm string) bool {
		for o := range active {
			if hostOf(o) != hostOf(vm) {
				return true
			}
		}
		return false
	}
	opts := backupd.JobOptions{Transports: []string{"file"},
		Progress: func(vm, disk string, total int64) (func(int64), func()) {
			mu.Lock()
			active[vm] = true
			n := 0
			for o := range active {
				if hostOf(o) == hostOf(vm) {
					n++
				}
			}
			perHost[hostOf(vm)] = max(perHost[hostOf(vm)], n)
			mu.Unlock()
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				mu.Lock()
				ok := otherHostActive(vm)
				if ok {
					together = max(together, len(active))
				}
				ok = ok || together >= 2 // shown once is enough
				mu.Unlock()
				if ok {
					break
				}
			}
			return func(int64) {}, func() {
				mu.Lock()
				delete(active, vm)
				mu.Unlock()
			}
		}}
	outs := backupd.BackupVMs(context.Background(), repo, conn, names, opts, backupd.ParallelOptions{VMs: 4, PerHost: 1})
	for _, o := range outs {
		if o.Err != nil {
			t.Fatalf("%s: %v", o.Spec, o.Err)
		}
		checkPoint(t, repo, o.Result.Point, diskNames(t, sim, o.Spec), runningImages(t, sim, o.Spec))
	}
	if perHost["h0"] != 1 || perHost["h1"] != 1 {
		t.Errorf("VMs read at once per host %v, want 1 on each (--per-host 1)", perHost)
	}
	if together != 2 {
		t.Errorf("at most %d VMs were read at once, want 2: one per host", together)
	}
}

// TestBackupNBDURL reads through an NBD server cairn did not start
// (--nbd-url): qemu-nbd serving the VM's disk while the guest is idle.
func TestBackupNBDURL(t *testing.T) {
	testutil.RequireTools(t, "qemu-nbd")
	sim := esxsimtest.Start(t, esxsim.Options{NumVMs: 1, DisksPerVM: 1, DiskSize: 16 << 20})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	g, _ := sim.Guest("vm1")
	if _, err := g.WriteRandomBlocks(0, 50, esxsim.BlockSize, rand.New(rand.NewPCG(8, 9))); err != nil {
		t.Fatal(err)
	}
	disks, _ := sim.Disks("vm1")
	sock := filepath.Join(t.TempDir(), "q.sock")
	srv := exec.Command("qemu-nbd", "-r", "-f", "raw", "--persistent", "-k", sock, disks[0].LocalPath)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	res, err := backupd.BackupVM(context.Background(), repo, conn, "vm1", backupd.JobOptions{
		Transports: []string{"nbd"}, NBDURL: "nbd+unix:///?socket=" + sock,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkPoint(t, repo, res.Point, diskNames(t, sim, "vm1"), runningImages(t, sim, "vm1"))
	if res.Disks[0].Transport != "nbd" || res.Disks[0].BytesRead != 50*esxsim.BlockSize {
		t.Errorf("disk result %+v", res.Disks[0])
	}
}

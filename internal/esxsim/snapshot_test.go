package esxsim_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/mo"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

func TestSnapshotFreezesDisksAndRemovalDeletesThem(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DisksPerVM: 2, DiskSize: 64 * mib})
	vm := vmObject(t, sim, c, "vm1")
	g, _ := sim.Guest("vm1")
	rng := rand.New(rand.NewPCG(5, 6))
	if _, err := g.WriteRandomBlocks(0, 20, esxsim.BlockSize, rng); err != nil {
		t.Fatal(err)
	}
	small, err := g.WriteRandomBlocks(1, 5, 4096, rng)
	if err != nil {
		t.Fatal(err)
	}
	infos, _ := sim.Disks("vm1")
	before := []([32]byte){fileSHA(t, infos[0].LocalPath), fileSHA(t, infos[1].LocalPath)}

	snap := snapshot(t, vm, "cairn-2026-11-23T01-00-00Z", false)
	disks := snapshotDisks(t, c, snap)
	if len(disks) != 2 {
		t.Fatalf("snapshot has %d disks, want 2", len(disks))
	}
	var frozen []string
	for i, d := range disks {
		b := flatBacking(t, d)
		if b.FileName == infos[i].FileName || !strings.HasPrefix(b.FileName, "[datastore1] vm1/") {
			t.Fatalf("snapshot disk %d backing %q, want a frozen copy beside %q", i, b.FileName, infos[i].FileName)
		}
		if b.Uuid != infos[i].UUID || d.Key != infos[i].Key {
			t.Errorf("snapshot disk %d: uuid %q key %d, want %q %d", i, b.Uuid, d.Key, infos[i].UUID, infos[i].Key)
		}
		path, err := sim.LocalPath(b.FileName)
		if err != nil {
			t.Fatal(err)
		}
		frozen = append(frozen, path)
		if got := fileSHA(t, path); got != before[i] {
			t.Errorf("frozen disk %d differs from the disk at snapshot time", i)
		}
	}
	// The running VM still uses its own disks.
	for i, d := range vmDisks(t, vm) {
		if flatBacking(t, d).FileName != infos[i].FileName {
			t.Errorf("running disk %d now backed by %q", i, flatBacking(t, d).FileName)
		}
	}

	if _, err := g.WriteRandomBlocks(0, 30, esxsim.BlockSize, rng); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteZeros(1, small[0].Offset, small[0].Length); err != nil {
		t.Fatal(err)
	}
	for i, path := range frozen {
		if got := fileSHA(t, path); got != before[i] {
			t.Errorf("frozen disk %d changed after guest writes", i)
		}
		if fileSHA(t, infos[i].LocalPath) == before[i] {
			t.Errorf("running disk %d did not change after guest writes", i)
		}
	}

	if err := removeSnapshot(vm, snap); err != nil {
		t.Fatalf("remove snapshot: %v", err)
	}
	for _, path := range frozen {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("frozen flat %s still there after removal (%v)", path, err)
		}
		desc := strings.TrimSuffix(path, "-flat.vmdk") + ".vmdk"
		if _, err := os.Stat(desc); !os.IsNotExist(err) {
			t.Errorf("frozen descriptor %s still there after removal (%v)", desc, err)
		}
	}
	var mvm mo.VirtualMachine
	if err := vm.Properties(context.Background(), vm.Reference(), []string{"snapshot"}, &mvm); err != nil {
		t.Fatal(err)
	}
	if mvm.Snapshot != nil && len(mvm.Snapshot.RootSnapshotList) != 0 {
		t.Errorf("snapshot tree still has %d roots", len(mvm.Snapshot.RootSnapshotList))
	}
	for _, info := range infos {
		if _, err := os.Stat(info.LocalPath); err != nil {
			t.Errorf("running disk gone after snapshot removal: %v", err)
		}
	}
}

func TestQuiesceFailureIsAFault(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "db", Disks: []esxsim.DiskSpec{{}}, FailQuiesce: true},
		{Name: "web", Disks: []esxsim.DiskSpec{{}}},
	}})
	db := vmObject(t, sim, c, "db")
	_, err := trySnapshot(db, "cairn-q", true)
	if err == nil {
		t.Fatal("quiesced snapshot of a VM that fails quiescing succeeded")
	}
	if faultName(err) != "ApplicationQuiesceFault" {
		t.Errorf("quiesce failure gave %v (%s), want ApplicationQuiesceFault", err, faultName(err))
	}
	if !strings.Contains(err.Error(), "quiesc") {
		t.Errorf("error %q does not mention quiescing", err)
	}
	// Crash-consistent fallback works, and the named snapshot can be found again.
	snapshot(t, db, "cairn-crash", false)
	ref, err := db.FindSnapshot(context.Background(), "cairn-crash")
	if err != nil {
		t.Fatalf("find snapshot by name: %v", err)
	}
	if len(snapshotDisks(t, c, *ref)) != 1 {
		t.Error("found snapshot has no frozen disk")
	}
	if err := sim.SetFailQuiesce("db", false); err != nil {
		t.Fatal(err)
	}
	snapshot(t, db, "cairn-q2", true)
	web := vmObject(t, sim, c, "web")
	snapshot(t, web, "cairn-web", true)
}

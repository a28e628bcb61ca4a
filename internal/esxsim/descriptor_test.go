package esxsim_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestDescriptorsOpenInQemu proves the disk files are what real tools
// expect: qemu-img reads the descriptor as a VMDK of the right size whose
// content is the raw flat file, for running and frozen disks alike.
func TestDescriptorsOpenInQemu(t *testing.T) {
	testutil.RequireTools(t, "qemu-img")
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib})
	vm := vmObject(t, sim, c, "vm1")
	g, _ := sim.Guest("vm1")
	if _, err := g.WriteRandomBlocks(0, 8, esxsim.BlockSize, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, vm, "s", false)
	frozen, err := sim.SnapshotDisks(snap)
	if err != nil || len(frozen) != 1 {
		t.Fatalf("snapshot disks %v, %v", frozen, err)
	}
	info, _ := sim.Disks("vm1")
	pairs := map[string]string{
		info[0].DescriptorPath: info[0].LocalPath,
		frozen[0].LocalPath[:len(frozen[0].LocalPath)-len("-flat.vmdk")] + ".vmdk": frozen[0].LocalPath,
	}
	ctx := context.Background()
	for desc, flat := range pairs {
		out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", desc).Output()
		if err != nil {
			t.Fatalf("qemu-img info %s: %v", desc, err)
		}
		var meta struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		if err := json.Unmarshal(out, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Format != "vmdk" || meta.VirtualSize != 64*mib {
			t.Errorf("%s: format %q size %d, want vmdk %d", desc, meta.Format, meta.VirtualSize, 64*mib)
		}
		if out, err := exec.CommandContext(ctx, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", desc, flat).CombinedOutput(); err != nil {
			t.Errorf("qemu-img compare %s %s: %v\n%s", desc, flat, err, out)
		}
	}
}

package esxsim_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

// Example shows the lab's use: start a simulator, let the "guest" write,
// and read what changed through the vSphere API as a backup would.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "esxsim-example-")
	defer os.RemoveAll(dir)
	sim, err := esxsim.Start(ctx, esxsim.Options{
		DatastoreDir: dir,
		VMs: []esxsim.VMSpec{{
			Name: "web", ChangeTracking: true,
			Disks: []esxsim.DiskSpec{{Size: 64 << 20}},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()

	g, _ := sim.Guest("web")
	_ = g.WriteRandom(0, 1<<20, esxsim.BlockSize, rand.New(rand.NewPCG(1, 1)))

	c, err := govmomi.NewClient(ctx, sim.ClientURL(), true) // or pin sim.Thumbprint
	if err != nil {
		fmt.Println(err)
		return
	}
	vm, _ := sim.VM(c.Client, "web")
	task, _ := vm.CreateSnapshot(ctx, "cairn-example", "", false, false)
	info, err := task.WaitForResult(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	snap := info.Result.(types.ManagedObjectReference)
	disks, _ := sim.Disks("web")
	res, err := methods.QueryChangedDiskAreas(ctx, c.Client, &types.QueryChangedDiskAreas{
		This: vm.Reference(), Snapshot: &snap, DeviceKey: disks[0].Key, StartOffset: 0, ChangeId: "*",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Returnval.ChangedArea[0].Start, res.Returnval.ChangedArea[0].Length)
	// Output: 1048576 65536
}

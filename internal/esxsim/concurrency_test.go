package esxsim_test

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

// TestSnapshotsDuringGuestWritesSeeAPrefix takes snapshots while the guest
// writes: each frozen disk must hold exactly the first k writes, whole,
// for some k, and CBT at that snapshot must report exactly those blocks.
func TestSnapshotsDuringGuestWritesSeeAPrefix(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{DiskSize: 64 * mib})
	vm := vmObject(t, sim, c, "vm1")
	enableCBT(t, vm)
	g, _ := sim.Guest("vm1")
	const writes = 100
	var wg sync.WaitGroup
	wg.Add(1)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := range writes {
			// Block 2i, filled with the byte i%250+1: never zero.
			if err := g.WriteAt(0, bytes.Repeat([]byte{byte(i%250 + 1)}, esxsim.BlockSize), int64(2*i)*esxsim.BlockSize); err != nil {
				errc <- err
				return
			}
		}
	}()
	type taken struct{ path string }
	var snaps []taken
	for i := range 3 {
		ref := snapshot(t, vm, "during-"+string(rune('a'+i)), false)
		d := snapshotDisks(t, c, ref)[0]
		path, err := sim.LocalPath(flatBacking(t, d).FileName)
		if err != nil {
			t.Fatal(err)
		}
		areas, _ := queryAll(t, vm, ref, d.Key, d.CapacityInBytes, "*")
		snaps = append(snaps, taken{path})
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for k < writes && data[int64(2*k)*esxsim.BlockSize] != 0 {
			k++
		}
		want := map[int64]bool{}
		for i := range writes {
			block := data[int64(2*i)*esxsim.BlockSize : int64(2*i+1)*esxsim.BlockSize]
			fill := byte(0)
			if i < k {
				fill = byte(i%250 + 1)
				want[int64(2*i)] = true
			}
			if !bytes.Equal(block, bytes.Repeat([]byte{fill}, esxsim.BlockSize)) {
				t.Fatalf("snapshot %d: block of write %d is torn or out of order (first %d writes present)", len(snaps), i, k)
			}
		}
		sameBlocks(t, "allocated at a snapshot taken during writes", blocksOf(areas), want)
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

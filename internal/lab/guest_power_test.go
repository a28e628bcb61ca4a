package lab

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/vmware/govmomi"
)

// TestGuestFollowsPower: a guest writes nothing while its VM is powered
// off, and after its disk was rolled back while off (as `cairn restore vm
// --in-place` does) it boots from the rolled-back disk: its next batches
// build on that content instead of writing its old state back over it,
// and the journal still replays to exactly what the disk holds.
func TestGuestFollowsPower(t *testing.T) {
	ctx := context.Background()
	l, err := Start(ctx, Options{Dir: t.TempDir(), VMs: 1, DiskSize: 64 << 20, Interval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := govmomi.NewClient(ctx, l.Sim().ClientURL(), true)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := l.Sim().VM(c.Client, "lab-vm-1")
	if err != nil {
		t.Fatal(err)
	}
	power := func(on bool) {
		t.Helper()
		task, err := vm.PowerOff(ctx)
		if on {
			task, err = vm.PowerOn(ctx)
		}
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatalf("power on=%v: %v", on, err)
		}
	}
	g := l.guests[0]
	waitBatches := func(n int) {
		t.Helper()
		want := g.batchDone() + n
		for deadline := time.Now().Add(20 * time.Second); g.batchDone() < want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the guest made only %d batches, want %d", g.batchDone(), want)
			}
		}
	}
	// powerOff returns once the guest saw its VM off: no batch is in flight
	powerOff := func() {
		t.Helper()
		power(false)
		for deadline := time.Now().Add(20 * time.Second); !g.sawOff(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the guest never noticed its VM was powered off")
			}
		}
	}
	waitBatches(3)
	powerOff()
	off := g.batchDone()
	disk := l.VMs[0].Disks[0].LocalPath
	saved, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // ten ticks
	if b := g.batchDone(); b != off {
		t.Fatalf("the guest of a powered-off VM wrote batches %d..%d", off+1, b)
	}
	power(true)
	waitBatches(3)
	powerOff()
	later := fmt.Sprintf("/home/user/docs/new-%06d.txt", off+1) // made after the saved state
	// the rollback: the disk as it was at batch off
	if err := os.WriteFile(disk, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	power(true)
	waitBatches(2)
	powerOff()
	last := g.batchDone()
	_, got := readTree(t, disk, 1)
	if _, ok := got[later]; ok {
		t.Fatalf("%s, made after the state the disk was rolled back to, is back: the guest undid the rollback", later)
	}
	entries, err := ReadJournal(l.VMs[0].Journal)
	if err != nil {
		t.Fatal(err)
	}
	compareStates(t, got, State(entries, 0, 1, last))
}

package test

import (
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBackupReadsTheFrozenSnapshot keeps the guest writing while each
// disk is being read (from the progress hook, after the snapshot was
// taken), through every transport: the point must hold the disks as they
// were at the snapshot, not the running disks, and the next backup must
// pick up what was written meanwhile.
func TestBackupReadsTheFrozenSnapshot(t *testing.T) {
	testutil.RequireTools(t, "qemu-nbd")
	e := newFaultEnv(t, esxsim.VMSpec{}, "cairn-proxy")
	g, err := e.sim.Guest("vm1")
	if err != nil {
		t.Fatal(err)
	}
	transports := []backupd.JobOptions{
		{Transports: []string{"file"}},
		{Transports: []string{"hotadd"}, ProxyVM: "cairn-proxy", HotAddDevice: simHotAdd(e.sim)},
		{Transports: []string{"nbd"}, NBDCommand: "qemu-nbd -r -f raw --persistent -k {socket} {disk_local_path}"},
	}
	for _, opts := range transports {
		t.Run(opts.Transports[0], func(t *testing.T) {
			e.write(t, 20)
			atSnapshot := runningImages(t, e.sim, "vm1")
			wrote := 0
			opts.Progress = func(vm, disk string, total int64) (func(int64), func()) {
				if d := slices.Index(e.names, disk); d >= 0 {
					if _, err := g.WriteRandomBlocks(d, 15, esxsim.BlockSize, e.rng); err != nil {
						t.Error(err)
					}
					wrote++
				}
				return func(int64) {}, func() {}
			}
			res, err := e.backup(opts)
			if err != nil {
				t.Fatal(err)
			}
			if wrote != len(e.names) {
				t.Fatalf("the guest wrote during %d of %d disk reads", wrote, len(e.names))
			}
			checkPoint(t, e.repo, res.Point, e.names, atSnapshot)
			if slices.EqualFunc(atSnapshot, runningImages(t, e.sim, "vm1"), func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Fatal("the running disks did not change during the backup: the test shows nothing")
			}
			opts.Progress = nil
			e.mustBackup(t, opts)
		})
	}
	e.noSnapshots(t)
}

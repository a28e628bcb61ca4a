package test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
)

// restoreNBDCommand writes a restored disk through nbdkit's file plugin on
// the simulator's flat file (what nbdkit vddk does on a real host).
const restoreNBDCommand = "nbdkit -t 1 -U {socket} -f file {disk_local_path}"

// restoreVMs are the VMs of the restore tests: BIOS and EFI, LSI Logic +
// AHCI and pvscsi + NVMe, thin, thick and eager disks, NICs.
func restoreVMs() []esxsim.VMSpec {
	return []esxsim.VMSpec{
		{
			Name: "biosvm", SCSIController: "lsilogic", NumCPUs: 2, CoresPerSocket: 1, MemoryMB: 1024,
			GuestID: "debian12_64Guest", CDROM: true, Annotation: "web server", ChangeTracking: true,
			NICs: []esxsim.NICSpec{{Type: "e1000"}},
			Disks: []esxsim.DiskSpec{
				{Size: 8 << 20}, {Size: 4 << 20, Provisioning: "thick"}, {Size: 4 << 20, Controller: esxsim.ControllerSATA},
			},
		},
		{
			Name: "efivm", Firmware: "efi", SecureBoot: true, NumCPUs: 4, CoresPerSocket: 2, MemoryMB: 2048, ChangeTracking: true,
			NICs: []esxsim.NICSpec{{}, {Type: "e1000e"}},
			Disks: []esxsim.DiskSpec{
				{Size: 16 << 20}, {Size: 4 << 20, Controller: esxsim.ControllerNVMe, Provisioning: "eager"},
			},
		},
	}
}

// scribble writes random data at random places of every disk of vm.
func scribble(t *testing.T, sim *esxsim.Sim, vm string, rng *rand.Rand) {
	t.Helper()
	g, err := sim.Guest(vm)
	if err != nil {
		t.Fatal(err)
	}
	disks, err := sim.Disks(vm)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range disks {
		if _, err := g.WriteRandomBlocks(i, 6, 64<<10, rng); err != nil {
			t.Fatal(err)
		}
		// and a stretch of zeros over data
		if err := g.WriteZeros(i, d.Size/2, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
}

// readPoint reads a whole disk of a point.
func readPoint(t *testing.T, repo *blockmap.Repo, p blockmap.Point, disk string) ([]byte, int64) {
	t.Helper()
	dr, err := repo.OpenDisk(context.Background(), p, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	b := make([]byte, dr.Size())
	if _, err := dr.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b, dr.DataBytes()
}

// sameAsPoint fails unless the simulator's file of a restored disk equals
// the point's disk byte for byte.
func sameAsPoint(t *testing.T, repo *blockmap.Repo, p blockmap.Point, disk, file string) {
	t.Helper()
	want, _ := readPoint(t, repo, p, disk)
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		off := 0
		for off < len(got) && off < len(want) && got[off] == want[off] {
			off++
		}
		t.Fatalf("restored %s (%s) differs from point %s at byte %d (sizes %d/%d)", disk, file, p.ID, off, len(got), len(want))
	}
}

func restoreOpts(sim *esxsim.Sim) backupd.RestoreOptions {
	return backupd.RestoreOptions{NBDCommand: restoreNBDCommand, NBD: fastNBD()}
}

func fastNBD() nbd.Options {
	return nbd.Options{RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond}
}

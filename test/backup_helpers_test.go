package test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// Test NBD server templates: the real servers, started by cairn per disk.
const (
	qemuNBDTemplate = "qemu-nbd -r -f raw --persistent -e 4 -k {socket} {disk_local_path}"
	nbdkitTemplate  = "nbdkit -t 1 -U {socket} -f file {disk_local_path}"
)

// nbdkitLogTemplate counts reads at the server: nbdkit's log filter appends
// one line per request to DIR/{vm}-{disk}.log.
func nbdkitLogTemplate(dir string) string {
	return "nbdkit -t 1 -U {socket} -f --filter=log file {disk_local_path} logfile=" + filepath.Join(dir, "{vm}-{disk}.log") + " logappend=true"
}

var nbdkitReadLine = regexp.MustCompile(`Read id=\d+ offset=0x[0-9a-f]+ count=0x([0-9a-f]+)`)

// serverReadBytes sums the bytes the nbdkit log filter saw read, then
// removes the log so the next backup counts from zero.
func serverReadBytes(t *testing.T, logFile string) int64 {
	t.Helper()
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("nbdkit log: %v", err)
	}
	var n int64
	for _, m := range nbdkitReadLine.FindAllSubmatch(data, -1) {
		c, err := strconv.ParseInt(string(m[1]), 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	os.Remove(logFile)
	return n
}

func newTestRepo(t *testing.T) *blockmap.Repo { return testutil.NewRepo(t) }

func connectSim(t *testing.T, sim *esxsim.Sim) *vsphere.Conn {
	t.Helper()
	c, err := vsphere.Connect(context.Background(), vsphere.ConnectOptions{
		URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: sim.Password}, Thumbprint: sim.Thumbprint,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// simHotAdd finds a hot-added disk the way the proxy's kernel would: the
// simulator tells which local file backs the proxy's device.
func simHotAdd(sim *esxsim.Sim) backupd.HotAddDeviceFunc {
	return func(_ context.Context, proxy string, d vsphere.HotAdded) (string, error) {
		return sim.DeviceLocalPath(proxy, d.Key)
	}
}

// diskNames maps the simulator's disk index to cairn's disk name.
func diskNames(t *testing.T, sim *esxsim.Sim, vm string) []string {
	t.Helper()
	disks, err := sim.Disks(vm)
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]int32{esxsim.ControllerSCSI: 2000, esxsim.ControllerSATA: 16000, esxsim.ControllerNVMe: 32000}
	var out []string
	for _, d := range disks {
		out = append(out, d.Controller+"0-"+strconv.Itoa(int(d.Key-base[d.Controller])))
	}
	return out
}

// runningImages reads every running disk of a VM: between backups, with no
// guest writes in between, they equal what the last snapshot froze.
func runningImages(t *testing.T, sim *esxsim.Sim, vm string) [][]byte {
	t.Helper()
	disks, err := sim.Disks(vm)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, d := range disks {
		b, err := os.ReadFile(d.LocalPath)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkPoint compares every disk of a point with the expected images.
func checkPoint(t *testing.T, repo *blockmap.Repo, p blockmap.Point, names []string, want [][]byte) {
	t.Helper()
	for i, name := range names {
		dr, err := repo.OpenDisk(context.Background(), p, name)
		if err != nil {
			t.Fatalf("point %s disk %s: %v", p.ID, name, err)
		}
		got := make([]byte, dr.Size())
		if _, err := dr.ReadAt(got, 0); err != nil {
			dr.Close()
			t.Fatalf("read point %s disk %s: %v", p.ID, name, err)
		}
		dr.Close()
		if !bytes.Equal(got, want[i]) {
			off := 0
			for off < len(got) && off < len(want[i]) && got[off] == want[i][off] {
				off++
			}
			t.Fatalf("point %s (gen %d) disk %s differs from the snapshot at byte %d (sizes %d/%d)", p.ID, p.Gen, name, off, len(got), len(want[i]))
		}
	}
}

// vmSnapshots lists the snapshot names a VM has now.
func vmSnapshots(t *testing.T, c *vsphere.Conn, sim *esxsim.Sim, vm string) []string {
	t.Helper()
	ref, err := sim.VMRef(vm)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.LoadVM(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range v.Snapshots {
		out = append(out, s.Name)
	}
	return out
}

func blocksOf(exts []esxsim.Extent, bs int64) map[int64]bool {
	m := map[int64]bool{}
	for _, e := range exts {
		for b := e.Offset / bs; b*bs < e.Offset+e.Length; b++ {
			m[b] = true
		}
	}
	return m
}

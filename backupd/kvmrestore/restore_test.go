package kvmrestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

const twoDiskConfig = `{"version":1,"name":"two","guest_id":"ubuntu64Guest","firmware":"efi","cpus":1,"memory_mb":256,
	"controllers":[{"key":1000,"type":"pvscsi","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":16777216,"provisioning":"thin"},
	         {"name":"scsi0-1","key":2001,"controller_key":1000,"bus":0,"unit":1,"capacity":8388608,"provisioning":"thin"}],
	"nics":[{"key":4000,"adapter_type":"vmxnet3","mac":"00:50:56:aa:bb:01","network":"VM Network","start_connected":true}]}`

// sparseImage writes a raw image of size with random data at the given
// [offset, length) areas and holes elsewhere.
func sparseImage(t *testing.T, path string, size int64, areas [][2]int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, a := range areas {
		buf := make([]byte, a[1])
		rand.Read(buf)
		if _, err := f.WriteAt(buf, a[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

type extent struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	Data   bool  `json:"data"`
}

// dataMap is qemu-img map's data extents of an image.
func dataMap(t *testing.T, img, format string) []extent {
	t.Helper()
	out, err := exec.Command("qemu-img", "map", "--output=json", "-f", format, img).Output()
	if err != nil {
		t.Fatalf("qemu-img map %s: %v", img, err)
	}
	var all, data []extent
	if err := json.Unmarshal(out, &all); err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.Data {
			data = append(data, e)
		}
	}
	return data
}

// fixture imports two points of a two-disk EFI VM (the second changes
// disk 0) and one point of a VM without configuration.
func fixture(t *testing.T) (*blockmap.Repo, []blockmap.Point, map[string]string, string) {
	t.Helper()
	repo := testutil.NewRepo(t)
	dir := t.TempDir()
	ctx := context.Background()
	srcs := map[string]string{"scsi0-0": filepath.Join(dir, "d0.img"), "scsi0-1": filepath.Join(dir, "d1.img")}
	sparseImage(t, srcs["scsi0-0"], 16<<20, [][2]int64{{0, 64 << 10}, {3 << 20, 200 << 10}, {10 << 20, 1 << 20}})
	sparseImage(t, srcs["scsi0-1"], 8<<20, [][2]int64{{1 << 20, 128 << 10}})
	imp := func(vm string, cfg bool) blockmap.Point {
		var disks []backupd.ImportDisk
		for _, n := range []string{"scsi0-0", "scsi0-1"} {
			disks = append(disks, backupd.ImportDisk{Name: n, Source: srcs[n]})
		}
		opts := backupd.ImportOptions{}
		if cfg {
			opts.Point.Attachments = map[string][]byte{vmconfig.AttachmentConfig: []byte(twoDiskConfig)}
		}
		p, err := backupd.Import(ctx, repo, vm, disks, opts)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := imp("two", true)
	first := filepath.Join(dir, "d0-first.img")
	if out, err := exec.Command("cp", "--sparse=always", srcs["scsi0-0"], first).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	sparseImage(t, srcs["scsi0-0"]+".new", 16<<20, [][2]int64{{0, 64 << 10}, {6 << 20, 512 << 10}})
	os.Rename(srcs["scsi0-0"]+".new", srcs["scsi0-0"])
	p2 := imp("two", true)
	bare := imp("bare", false)
	// the first point's disk 0 is the first image
	srcs["first"] = first
	return repo, []blockmap.Point{p1, p2, bare}, srcs, dir
}

// TestRestoreDisks writes both points of a two-disk VM as qcow2 and raw
// and compares every image with what was imported (qemu-img compare),
// checks the holes stayed holes (qemu-img map: no data outside the
// source's data), refuses an existing file, overwrites it with Force,
// refuses a point without configuration, and removes everything on
// cancellation.
func TestRestoreDisks(t *testing.T) {
	testutil.RequireTools(t, "qemu-img")
	if _, err := os.Stat(ovmfTemplate()); err != nil {
		testutil.Missing(t, "ovmf ("+ovmfTemplate()+")")
	}
	repo, pts, srcs, _ := fixture(t)
	ctx := context.Background()
	vmNet := map[string]NetworkTarget{"VM Network": {Kind: NetKindUser}}
	for _, c := range []struct {
		point  blockmap.Point
		format string
		disk0  string
	}{
		{pts[0], FormatQCOW2, srcs["first"]}, {pts[1], FormatQCOW2, srcs["scsi0-0"]}, {pts[1], FormatRaw, srcs["scsi0-0"]},
	} {
		out := filepath.Join(t.TempDir(), "out")
		res, err := Restore(ctx, repo, Request{Point: c.point, Spec: Spec{Dir: out, Format: c.format, Networks: vmNet, DomainType: DomainQEMU}})
		if err != nil {
			t.Fatalf("%s %s: %v", c.point.ID, c.format, err)
		}
		want := map[string]string{"scsi0-0": c.disk0, "scsi0-1": srcs["scsi0-1"]}
		for _, d := range res.Disks {
			if cmp, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", c.format, want[d.Name], d.File).CombinedOutput(); err != nil {
				t.Errorf("%s %s: qemu-img compare %s %s: %v %s", c.point.ID, c.format, want[d.Name], d.File, err, cmp)
			}
			src := dataMap(t, want[d.Name], "raw")
			var got int64
			for _, e := range dataMap(t, d.File, c.format) {
				got += e.Length
				inside := slices.ContainsFunc(src, func(s extent) bool {
					// qcow2 clusters are 64 KiB
					return e.Start >= s.Start&^(64<<10-1) && e.Start+e.Length <= (s.Start+s.Length+64<<10-1)&^(64<<10-1)
				})
				if !inside {
					t.Errorf("%s %s: data at %d+%d where the source has a hole (source map %v)", c.format, d.Name, e.Start, e.Length, src)
				}
			}
			if got == 0 || got > res.DataBytes[d.Name]+2*64<<10*int64(len(src)) {
				t.Errorf("%s %s: %d data bytes in the image, %d in the point", c.format, d.Name, got, res.DataBytes[d.Name])
			}
		}
		if fi, err := os.Stat(res.NVRAM); err != nil || fi.Size() == 0 {
			t.Errorf("UEFI variables %s: %v", res.NVRAM, err)
		}
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			if strings.Contains(e.Name(), "cairn-partial") {
				t.Errorf("left a temporary file %s", e.Name())
			}
		}
		if len(entries) != 4 {
			t.Errorf("%d files in %s, want 2 disks, the variables and the XML", len(entries), out)
		}
	}

	// an existing file is refused and left alone; Force overwrites it
	out := filepath.Join(t.TempDir(), "out")
	spec := Spec{Dir: out, Networks: vmNet, DomainType: DomainQEMU, Name: "again"}
	if _, err := Restore(ctx, repo, Request{Point: pts[1], Spec: spec}); err != nil {
		t.Fatal(err)
	}
	x := filepath.Join(out, "again.xml")
	os.WriteFile(x, []byte("mine"), 0o644)
	_, err := Restore(ctx, repo, Request{Point: pts[0], Spec: spec})
	var ee *ExistsError
	if !errors.As(err, &ee) || !strings.HasPrefix(ee.Path, out) {
		t.Errorf("restore over existing files: %v", err)
	}
	if b, _ := os.ReadFile(x); string(b) != "mine" {
		t.Errorf("a refused restore changed %s", x)
	}
	spec.Force = true
	res, err := Restore(ctx, repo, Request{Point: pts[0], Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(x); !bytes.Contains(b, []byte("<domain")) {
		t.Errorf("--force did not overwrite %s", x)
	}
	if cmp, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", srcs["first"], res.Disks[0].File).CombinedOutput(); err != nil {
		t.Errorf("forced restore of the first point: %v %s", err, cmp)
	}

	// a point without configuration: refused, or given one
	if _, err := Restore(ctx, repo, Request{Point: pts[2], Spec: Spec{Dir: t.TempDir(), Networks: vmNet}}); !errors.Is(err, ErrNoConfig) {
		t.Errorf("point without configuration: %v", err)
	}
	cfg, _ := vmconfig.Parse([]byte(twoDiskConfig))
	if _, err := Restore(ctx, repo, Request{Point: pts[2], Config: cfg, Spec: Spec{Dir: t.TempDir(), Networks: vmNet, DomainType: DomainQEMU}}); err != nil {
		t.Errorf("point without configuration, one given: %v", err)
	}

	// cancelled while the second disk is written: nothing is left
	for _, format := range []string{FormatQCOW2, FormatRaw} {
		out := filepath.Join(t.TempDir(), "out")
		cctx, cancel := context.WithCancel(ctx)
		n := 0
		_, err := Restore(cctx, repo, Request{Point: pts[1], Spec: Spec{Dir: out, Format: format, Networks: vmNet, DomainType: DomainQEMU},
			Progress: func(PlannedDisk, int64) {
				if n++; n == 2 {
					cancel()
				}
			}})
		cancel()
		var re *RemovedError
		if !errors.Is(err, context.Canceled) || !errors.As(err, &re) || len(re.Removed) == 0 {
			t.Errorf("%s: cancelled restore: %v", format, err)
		}
		if entries, err := os.ReadDir(out); !os.IsNotExist(err) {
			t.Errorf("%s: a cancelled restore left its directory, holding %v", format, entries)
		}
	}
}

func ovmfTemplate() string {
	_, v := boot.OVMFFiles(false)
	return v
}

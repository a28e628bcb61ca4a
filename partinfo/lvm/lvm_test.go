package lvm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
	"github.com/cairnbackup/cairn/partinfo/lvm"
)

// lvNames are the visible LVs with a filesystem.
var lvNames = []string{"span", "stripe", "mirror1", "legacy", "thin1", "thin2", "parity"}

// shared is the fixture every test reads (built once per test binary).
var shared struct {
	once   sync.Once
	dir    string
	layout *lvmfixture.Layout
	srcs   map[string]string
	err    string
}

// build makes the two-disk VG with an ext4 filesystem (from its own
// source tree) on every visible LV.
func build(t *testing.T) (*lvmfixture.Layout, map[string]string) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.ext4")...)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "lvm-fixture-")
		if err != nil {
			shared.err = err.Error()
			return
		}
		shared.dir = dir
		ft := &onceT{TB: t}
		shared.srcs = map[string]string{}
		fill := map[string]string{}
		for i, name := range lvNames {
			src := filepath.Join(dir, "src-"+name)
			if name == "thin2" {
				// A snapshot of thin1 with one file changed and one added.
				fixture.Run(ft, nil, "cp", "-a", shared.srcs["thin1"], src)
				os.WriteFile(filepath.Join(src, "lower.txt"), []byte("changed in the snapshot\n"), 0o4750)
				os.WriteFile(filepath.Join(src, "only-in-thin2.txt"), []byte("new\n"), 0o644)
			} else {
				fixture.Tree(ft, src, fixture.Spec{ManyFiles: 40 + 10*i, BigDir: 20, Depth: 3, BigFile: int64(3+i) << 20, Seed: uint64(i + 1)})
				os.Chmod(filepath.Join(src, "lower.txt"), 0o4750)
				os.Lchown(filepath.Join(src, "MixedCase.TXT"), 1234, 5678)
			}
			img := filepath.Join(dir, name+".ext4")
			size := map[string]int64{"span": lvmfixture.SpanSize, "stripe": lvmfixture.StripeSize, "mirror1": lvmfixture.RaidSize, "legacy": lvmfixture.MirrorSize, "thin1": lvmfixture.ThinSize, "thin2": lvmfixture.ThinSize, "parity": lvmfixture.ParitySize}[name]
			fixture.Run(ft, nil, "mkfs.ext4", "-q", "-F", "-L", name, "-d", src, img, itoa(size/1024)+"K")
			shared.srcs[name] = src
			fill[name] = img
		}
		shared.layout = lvmfixture.Build(ft, dir, fill)
	})
	if shared.err != "" || shared.layout == nil {
		t.Fatalf("LVM fixture: %s", shared.err)
	}
	return shared.layout, shared.srcs
}

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// onceT keeps the fixture alive past the test that built it: Cleanup
// (loop devices) runs at the end of the binary instead.
type onceT struct{ testing.TB }

func (o *onceT) Cleanup(f func()) { cleanups = append(cleanups, f) }

var cleanups []func()

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// devices lists the volumes of the disk images as the FUSE tree does:
// partitions, or the whole disk without a table.
func devices(t *testing.T, disks []string) []lvm.Device {
	t.Helper()
	var out []lvm.Device
	for i, d := range disks {
		f, err := os.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		st, _ := f.Stat()
		tab, err := partinfo.ReadTable(f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		name := "disk" + strconv.Itoa(i)
		if tab.Type == partinfo.TableNone {
			out = append(out, lvm.Device{Name: name + "/whole", R: f, Size: st.Size()})
			continue
		}
		for _, p := range tab.Partitions {
			out = append(out, lvm.Device{Name: name + "/" + p.Label(), R: f, Off: p.Start, Size: p.Size})
		}
	}
	return out
}

func TestLVMVolumes(t *testing.T) {
	layout, srcs := build(t)
	set, err := lvm.Scan(context.Background(), devices(t, layout.Disks))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Problems) != 0 {
		t.Errorf("problems: %q", set.Problems)
	}
	vg := set.VG("vgdata")
	if vg == nil {
		t.Fatalf("no VG vgdata; found %d VGs", len(set.VGs))
	}
	if len(vg.Problems) != 0 {
		t.Errorf("VG problems: %q", vg.Problems)
	}
	var names []string
	for _, lv := range vg.VisibleLVs() {
		names = append(names, lv.Name)
	}
	if !sameSet(names, append([]string{"pool"}, lvNames...)) {
		t.Errorf("visible LVs %s", strings.Join(names, ","))
	}
	if _, err := vg.LV("pool").Open(); !errors.Is(err, lvm.ErrUnsupported) || !strings.Contains(err.Error(), "thin pool") {
		t.Errorf("opening the thin pool itself: %v", err)
	}
	for _, name := range lvNames {
		t.Run(name, func(t *testing.T) {
			lv := vg.LV(name)
			if lv == nil {
				t.Fatalf("no LV %s", name)
			}
			if lv.Size() != layout.LVs[name] {
				t.Errorf("size %d, want %d", lv.Size(), layout.LVs[name])
			}
			vol, err := lv.Open()
			if err != nil {
				t.Fatal(err)
			}
			compareVolume(t, vol, srcs[name])
		})
	}
	// Extents agree with vgs.
	out := layout.LVM("vgs", "--noheadings", "-o", "vg_extent_count,vg_free_count", "vgdata")
	f := strings.Fields(out)
	total, alloc := vg.Extents()
	if len(f) < 2 || f[len(f)-2] != strconv.FormatInt(total, 10) || f[len(f)-1] != strconv.FormatInt(total-alloc, 10) {
		t.Errorf("extents %d, free %d; vgs says %q", total, total-alloc, out)
	}
	if typ := vg.LV("span").Type(); typ != "linear" || len(vg.LV("span").Segments) != 2 {
		t.Errorf("span: type %s, %d segments; want linear in 2 segments (crossing the disks)", typ, len(vg.LV("span").Segments))
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// compareVolume opens the ext4 on vol and compares every file, mode and
// owner with the source tree.
func compareVolume(t *testing.T, vol *lvm.Volume, src string) {
	t.Helper()
	d := partinfo.Detect(vol, 0, vol.Size())
	if d.Type != "ext4" {
		t.Fatalf("detected %q, want ext4", d.Type)
	}
	fsys, err := fsopen.Open(vol, 0, vol.Size(), d)
	if err != nil {
		t.Fatal(err)
	}
	gfs := partinfo.AsFS(fsys)
	if n := fixture.Compare(t, gfs, src, time.Second); n < 20 {
		t.Errorf("only %d files compared", n)
	}
	filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		fi, err := fs.Stat(gfs, filepath.ToSlash(rel))
		if err != nil {
			t.Errorf("stat %s: %v", rel, err)
			return nil
		}
		a, _ := fi.Sys().(partinfo.Attr)
		if uint32(a.Mode.Perm())|modeBits(a.Mode) != st.Mode&0o7777 || a.Uid != st.Uid || a.Gid != st.Gid {
			t.Errorf("%s: mode %v uid %d gid %d, want %o %d %d", rel, a.Mode, a.Uid, a.Gid, st.Mode&0o7777, st.Uid, st.Gid)
		}
		return nil
	})
}

func modeBits(m fs.FileMode) uint32 {
	var b uint32
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// A VG with one of its two disks missing shows what lies on the other
// and names what is missing.
func TestLVMMissingPV(t *testing.T) {
	layout, srcs := build(t)
	set, err := lvm.Scan(context.Background(), devices(t, layout.Disks[:1]))
	if err != nil {
		t.Fatal(err)
	}
	vg := set.VG("vgdata")
	if vg == nil {
		t.Fatal("VG not assembled from one disk")
	}
	if len(vg.MissingPVs()) != 1 || !strings.Contains(strings.Join(vg.Problems, "\n"), "is on none of the disks") {
		t.Errorf("problems %q, missing %d", vg.Problems, len(vg.MissingPVs()))
	}
	for _, name := range []string{"span", "stripe"} {
		_, err := vg.LV(name).Open()
		if !errors.Is(err, lvm.ErrMissingPV) {
			t.Errorf("%s: %v, want ErrMissingPV", name, err)
		}
	}
	// The raid1 and mirror LVs read from their healthy leg on disk0.
	for _, name := range []string{"mirror1", "legacy"} {
		t.Run(name, func(t *testing.T) {
			vol, err := vg.LV(name).Open()
			if err != nil {
				t.Fatal(err)
			}
			compareVolume(t, vol, srcs[name])
		})
	}
}

// TestLVMMetadataCopies: after lvcreate on the VG, disk1 gets its old
// metadata area back (as if the write to it had been lost): the newest
// copy (disk0) wins and disk1 is named as older. Then the newest copy's
// text is damaged: its checksum fails, the scan says so and falls back to
// the older, intact copy.
func TestLVMMetadataCopies(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, lvmfixture.Required...)
	dir := t.TempDir()
	layout := lvmfixture.Build(t, dir, nil)
	old := make([]byte, 1<<20)
	f1, err := os.OpenFile(layout.Disks[1], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	if _, err := f1.ReadAt(old, 0); err != nil {
		t.Fatal(err)
	}
	layout.LVM("lvcreate", "-q", "-an", "-Zn", "-y", "-L", "4M", "-n", "extra", layout.VG)
	layout.LVM("vgs", layout.VG) // drop the loop device's cached pages before the write below
	if _, err := f1.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	devs := devices(t, layout.Disks)
	set, err := lvm.Scan(context.Background(), devs)
	if err != nil {
		t.Fatal(err)
	}
	vg := set.VG("vgdata")
	if vg == nil || vg.LV("extra") == nil {
		t.Fatalf("newest metadata (with LV extra) not used: %+v", set)
	}
	if p := strings.Join(vg.Problems, "\n"); !strings.Contains(p, "disk1/whole metadata area 1 holds older metadata") {
		t.Errorf("problems do not name disk1's older copy: %q", vg.Problems)
	}

	// Damage one byte of the newest text (on disk0/p2).
	var pv lvm.Device
	for _, d := range devs {
		if d.Name == "disk0/p2" {
			pv = d
		}
	}
	hdr := make([]byte, 512)
	if _, err := pv.ReadAt(hdr, 4096); err != nil || string(hdr[4:20]) != " LVM2 x[5A%r0N*>" {
		t.Fatalf("no metadata area header at 4096 of disk0/p2: %v", err)
	}
	textOff := int64(binary.LittleEndian.Uint64(hdr[40:]))
	f0, err := os.OpenFile(layout.Disks[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f0.Close()
	b := make([]byte, 1)
	at := pv.Off + 4096 + textOff + 20
	f0.ReadAt(b, at)
	b[0] ^= 0x20
	f0.WriteAt(b, at)
	set, err = lvm.Scan(context.Background(), devices(t, layout.Disks))
	if err != nil {
		t.Fatal(err)
	}
	vg = set.VG("vgdata")
	if vg == nil {
		t.Fatalf("VG not assembled from the intact copy; problems %q", set.Problems)
	}
	if vg.LV("extra") != nil {
		t.Error("LV extra comes from the damaged copy")
	}
	if p := strings.Join(set.Problems, "\n"); !strings.Contains(p, "disk0/p2: metadata area 1") || !strings.Contains(p, "checksum") {
		t.Errorf("problems do not name the damaged copy: %q", set.Problems)
	}
	if vg.LV("span") == nil || vg.LV("mirror1") == nil {
		t.Error("older copy lost the fixture's LVs")
	}
}

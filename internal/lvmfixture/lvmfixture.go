// Package lvmfixture builds LVM2 test disks with the real lvm2 tools on
// loop devices, without device-mapper: pvcreate, vgcreate and lvcreate
// -an -Zn write the physical volumes and linear/striped LVs; raid1 and
// mirror LVs (which lvcreate refuses without the kernel driver) are added
// to the text metadata and written back with vgcfgrestore. Each LV is
// filled at the byte offsets lvs and pvs report (seg_pe_ranges, pe_start,
// stripe_size), so the layout is LVM's own, not cairn's.
package lvmfixture

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/mdfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// MiB is a mebibyte.
const MiB = 1 << 20

// Layout is what Build made.
type Layout struct {
	// Disks are the image files: disk0.img (GPT, PV on partition 2) and
	// disk1.img (PV on the whole disk).
	Disks []string
	VG    string
	// ExtentSize in bytes.
	ExtentSize int64
	// LVs maps each visible LV name to its size in bytes.
	LVs map[string]int64
	// Fill writes the file src (a filesystem image) into a visible LV
	// again, both legs of raid1 and mirror LVs.
	Fill func(lv, src string)
	// LVM runs an lvm2 command (name first) on the fixture's loop
	// devices, which stay attached until the test ends.
	LVM func(args ...string) string
}

// Sizes of the LVs Build makes (visible LVs).
const (
	StripeSize = 16 * MiB  // "stripe": two stripes of 64 KiB over both disks
	RaidSize   = 16 * MiB  // "mirror1": raid1, one image on each disk
	MirrorSize = 8 * MiB   // "legacy": old "mirror" segment type
	SpanSize   = 120 * MiB // "span": two linear segments, disk0 then disk1
	ThinSize   = 48 * MiB  // "thin1" and its snapshot "thin2" in thin pool "pool" (32 MiB on disk1)
	ParitySize = 16 * MiB  // "parity": raid5 (left-symmetric, 64 KiB stripes) over three 8 MiB images
	// ThinChunk is the thin pool's data block size.
	ThinChunk = 64 << 10
)

// lvmEnv runs lvm commands with a private config: no udev, no backups,
// no device-mapper, on the pinned loop devices loops (devs: their names).
type lvmEnv struct {
	t     testing.TB
	env   []string
	devs  string
	loops []*testutil.Loop
}

func newLVMEnv(t testing.TB, sys string, loops ...*testutil.Loop) *lvmEnv {
	e := &lvmEnv{t: t, env: []string{"LVM_SYSTEM_DIR=" + sys, "LVM_SUPPRESS_FD_WARNINGS=1"}, loops: loops}
	var names []string
	for _, l := range loops {
		names = append(names, l.Dev)
	}
	e.devs = strings.Join(names, ",")
	return e
}

func (e *lvmEnv) run(args ...string) string {
	e.t.Helper()
	// Pinned, a loop stays the fixture's whatever other tests detach;
	// should it not, say so rather than let lvm report a missing PV.
	for _, l := range e.loops {
		if err := l.Check(); err != nil {
			e.t.Fatalf("lvmfixture: before %s: %v", args[0], err)
		}
	}
	args = append(args[:1:1], append([]string{"--driverloaded", "n", "--devices", e.devs}, args[1:]...)...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), e.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Required lists the commands Build needs.
var Required = []string{"pvcreate", "vgcreate", "lvcreate", "lvs", "pvs", "vgcfgbackup", "vgcfgrestore", "losetup", "sgdisk", "thin_restore", "thin_dump"}

// Build makes the two disks under dir and fills each LV named in fill
// with the bytes of the file given (a filesystem image, at most the LV's
// size). Both legs of raid1 and mirror LVs are filled.
func Build(t testing.TB, dir string, fill map[string]string) *Layout {
	t.Helper()
	d0, d1 := filepath.Join(dir, "disk0.img"), filepath.Join(dir, "disk1.img")
	for _, d := range []struct {
		p string
		n int64
	}{{d0, 176 * MiB}, {d1, 160 * MiB}} {
		f, err := os.Create(d.p)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(d.n)
		f.Close()
	}
	// disk0: p1 a small unformatted partition, p2 the PV.
	sh(t, "sgdisk", "-n", "1:2048:+16M", "-n", "2:0:0", "-t", "2:8e00", d0)
	p2start, p2size := int64(34816*512), int64(0)
	out := sh(t, "sgdisk", "-i", "2", d0)
	if m := regexp.MustCompile(`First sector: (\d+).*\nLast sector: (\d+)`).FindStringSubmatch(out); m != nil {
		a, _ := strconv.ParseInt(m[1], 10, 64)
		b, _ := strconv.ParseInt(m[2], 10, 64)
		p2start, p2size = a*512, (b-a+1)*512
	} else {
		t.Fatalf("sgdisk -i 2: %s", out)
	}
	// Pinned loop devices (testutil.AttachLoop): another test's stray
	// `losetup -d` of a reused name cannot take a PV away mid-build.
	lp0 := testutil.AttachLoop(t, d0, testutil.LoopOptions{Offset: p2start, SizeLimit: p2size})
	lp1 := testutil.AttachLoop(t, d1, testutil.LoopOptions{})
	l0, l1 := lp0.Dev, lp1.Dev
	where := map[string]struct {
		img string
		off int64
	}{l0: {d0, p2start}, l1: {d1, 0}}

	sys := filepath.Join(dir, "lvm-etc")
	os.MkdirAll(sys, 0o755)
	conf := "global { use_lvmetad = 0 }\nactivation { udev_sync = 0 udev_rules = 0 }\nbackup { backup = 0 archive = 0 }\ndevices { obtain_device_list_from_udev = 0 }\n"
	if err := os.WriteFile(filepath.Join(sys, "lvm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newLVMEnv(t, sys, lp0, lp1)
	const vg = "vgdata"
	e.run("pvcreate", "-q", "-ff", "-y", l0, l1)
	e.run("vgcreate", "-q", "-s", "4M", vg, l0, l1)
	lv := func(name, size string, extra ...string) {
		e.run(append([]string{"lvcreate", "-q", "-an", "-Zn", "-y", "-L", size, "-n", name}, extra...)...)
	}
	lv("stripe", "16M", "-i2", "-I64k", vg, l0, l1)
	// lvcreate reserves the image names: make them under placeholders
	// and rename them in the metadata.
	images := []struct{ tmp, name, size, pv string }{
		{"tmpA", "mirror1_rmeta_0", "4M", l0}, {"tmpB", "mirror1_rimage_0", "16M", l0},
		{"tmpC", "mirror1_rmeta_1", "4M", l1}, {"tmpD", "mirror1_rimage_1", "16M", l1},
		{"tmpE", "legacy_mimage_0", "8M", l0}, {"tmpF", "legacy_mimage_1", "8M", l1},
		{"tmpG", "pool_tmeta", "4M", l1}, {"tmpH", "pool_tdata", "32M", l1},
		{"tmpI", "parity_rmeta_0", "4M", l0}, {"tmpJ", "parity_rimage_0", "8M", l0},
		{"tmpK", "parity_rmeta_1", "4M", l1}, {"tmpL", "parity_rimage_1", "8M", l1},
		{"tmpM", "parity_rmeta_2", "4M", l1}, {"tmpN", "parity_rimage_2", "8M", l1},
	}
	for _, im := range images {
		lv(im.tmp, im.size, vg, im.pv)
	}
	lv("span", "120M", vg, l0, l1)

	// raid1 and mirror LVs: rewrite the metadata, hiding the images.
	backup := filepath.Join(dir, "vg.txt")
	e.run("vgcfgbackup", "-q", "-f", backup, vg)
	text, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	s := string(text)
	for _, im := range images {
		re := regexp.MustCompile(`(?s)\n\t\t` + im.tmp + ` \{(.*?status = \[)"READ", "WRITE", "VISIBLE"\]`)
		if !re.MatchString(s) {
			t.Fatalf("metadata: no section for %s:\n%s", im.tmp, s)
		}
		s = re.ReplaceAllString(s, "\n\t\t"+im.name+` {${1}"READ", "WRITE"]`)
	}
	newLVs := lvSection("mirror1", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa1", RaidSize/(4*MiB),
		`type = "raid1"
				device_count = 2
				region_size = 8192
				raids = ["mirror1_rmeta_0", "mirror1_rimage_0", "mirror1_rmeta_1", "mirror1_rimage_1"]`) +
		lvSection("legacy", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa2", MirrorSize/(4*MiB),
			`type = "mirror"
				mirror_count = 2
				region_size = 1024
				mirrors = ["legacy_mimage_0", 0, "legacy_mimage_1", 0]`) +
		lvSection("pool", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa3", 8,
			`type = "thin-pool"
				metadata = "pool_tmeta"
				pool = "pool_tdata"
				transaction_id = 2
				chunk_size = 128
				discards = "passdown"
				zero_new_blocks = 0`) +
		lvSection("parity", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa6", ParitySize/(4*MiB),
			`type = "raid5_ls"
				device_count = 3
				region_size = 8192
				stripe_size = 128
				raids = ["parity_rmeta_0", "parity_rimage_0", "parity_rmeta_1", "parity_rimage_1", "parity_rmeta_2", "parity_rimage_2"]`) +
		lvSection("thin1", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa4", ThinSize/(4*MiB),
			`type = "thin"
				thin_pool = "pool"
				transaction_id = 0
				device_id = 1`) +
		lvSection("thin2", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa5", ThinSize/(4*MiB),
			`type = "thin"
				thin_pool = "pool"
				transaction_id = 1
				device_id = 2
				origin = "thin1"`)
	i := strings.Index(s, "logical_volumes {\n")
	if i < 0 {
		t.Fatalf("metadata without logical_volumes:\n%s", s)
	}
	i += len("logical_volumes {\n")
	s = s[:i] + newLVs + s[i:]
	if err := os.WriteFile(backup, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	e.run("vgcfgrestore", "-q", "--force", "-f", backup, vg)

	// Locate every segment and fill.
	var pvs struct {
		Report []struct {
			PV []struct {
				Name    string `json:"pv_name"`
				PEStart string `json:"pe_start"`
			} `json:"pv"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(jsonPart(e.run("pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,pe_start"))), &pvs); err != nil {
		t.Fatal(err)
	}
	peStart := map[string]int64{}
	for _, p := range pvs.Report[0].PV {
		peStart[p.Name], _ = strconv.ParseInt(p.PEStart, 10, 64)
	}
	var lvs struct {
		Report []struct {
			LV []struct {
				Name       string `json:"lv_name"`
				SegStartPE string `json:"seg_start_pe"`
				SegSizePE  string `json:"seg_size_pe"`
				Stripes    string `json:"stripes"`
				StripeSize string `json:"stripe_size"`
				Ranges     string `json:"seg_pe_ranges"`
			} `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(jsonPart(e.run("lvs", "-a", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges", vg))), &lvs); err != nil {
		t.Fatal(err)
	}
	const es = 4 * MiB
	type seg struct {
		start, size, stripeSize int64
		ranges                  []string
	}
	segs := map[string][]seg{}
	for _, l := range lvs.Report[0].LV {
		if l.Ranges == "" {
			continue
		}
		var sg seg
		sg.start, _ = strconv.ParseInt(l.SegStartPE, 10, 64)
		sg.size, _ = strconv.ParseInt(l.SegSizePE, 10, 64)
		sg.stripeSize, _ = strconv.ParseInt(l.StripeSize, 10, 64)
		sg.ranges = strings.Fields(l.Ranges)
		segs[strings.Trim(l.Name, "[]")] = append(segs[strings.Trim(l.Name, "[]")], sg)
	}
	// rangeOff is the byte offset in its image of a "dev:first-last" range.
	rangeOff := func(r string) (string, int64) {
		m := regexp.MustCompile(`^(.*):(\d+)-(\d+)$`).FindStringSubmatch(r)
		if m == nil {
			t.Fatalf("seg_pe_ranges %q", r)
		}
		first, _ := strconv.ParseInt(m[2], 10, 64)
		w, ok := where[m[1]]
		if !ok {
			t.Fatalf("seg_pe_ranges names %s, not one of the fixture's loop devices", m[1])
		}
		return w.img, w.off + peStart[m[1]] + first*es
	}
	files := map[string]*os.File{}
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	put := func(img string, b []byte, off int64) {
		f := files[img]
		if f == nil {
			var err error
			if f, err = os.OpenFile(img, os.O_RDWR, 0); err != nil {
				t.Fatal(err)
			}
			files[img] = f
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	// writeAt writes data at byte offset at of an LV (visible or not).
	writeAt := func(lvName string, data []byte, at int64) {
		ss := segs[lvName]
		if len(ss) == 0 {
			t.Fatalf("lvs shows no segments for %s", lvName)
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].start < ss[j].start })
		end := at + int64(len(data))
		for _, sg := range ss {
			lo, hi := max(sg.start*es, at), min((sg.start+sg.size)*es, end)
			if lo >= hi {
				continue
			}
			segLo := sg.start * es
			n := int64(len(sg.ranges))
			if n == 1 {
				img, off := rangeOff(sg.ranges[0])
				put(img, data[lo-at:hi-at], off+lo-segLo)
				continue
			}
			// dm-stripe: chunk c of the segment is chunk c/n of stripe c%n.
			for o := lo; o < hi; {
				c := (o - segLo) / sg.stripeSize
				in := (o - segLo) % sg.stripeSize
				img, off := rangeOff(sg.ranges[c%n])
				e := min(o+sg.stripeSize-in, hi)
				put(img, data[o-at:e-at], off+(c/n)*sg.stripeSize+in)
				o = e
			}
		}
	}
	write := func(lvName, src string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeAt(lvName, data, 0)
	}
	fillLV := func(name, src string) {
		switch name {
		case "thin1", "thin2", "pool":
			t.Fatalf("lvmfixture: thin volumes are filled by Build only")
		case "mirror1":
			write("mirror1_rimage_0", src)
			write("mirror1_rimage_1", src)
		case "legacy":
			write("legacy_mimage_0", src)
			write("legacy_mimage_1", src)
		case "parity":
			// md's raid5 placement (dm-raid is md underneath), parity included.
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			spec := mdfixture.Spec{Level: mdfixture.Level5, Layout: mdfixture.AlgLeftSymmetric, Chunk: 64 << 10, Members: 3, MemberLen: 8 * MiB, Raw: true}
			for i, m := range spec.LayOut(data) {
				writeAt(fmt.Sprintf("parity_rimage_%d", i), m, 0)
			}
		default:
			write(name, src)
		}
	}
	for name, src := range fill {
		if name != "thin1" && name != "thin2" {
			fillLV(name, src)
		}
	}
	fillThin(t, dir, fill, func(data []byte, at int64) { writeAt("pool_tdata", data, at) }, func(data []byte) { writeAt("pool_tmeta", data, 0) })
	return &Layout{Fill: fillLV, Disks: []string{d0, d1}, VG: vg, ExtentSize: es,
		LVs: map[string]int64{"stripe": StripeSize, "mirror1": RaidSize, "legacy": MirrorSize, "span": SpanSize, "thin1": ThinSize, "thin2": ThinSize, "parity": ParitySize},
		LVM: e.run}
}

// jsonPart drops warnings printed before lvm's JSON report.
func jsonPart(s string) string {
	if i := strings.Index(s, "{"); i >= 0 {
		return s[i:]
	}
	return s
}

func lvSection(name, id string, extents int64, seg string) string {
	return fmt.Sprintf(`
		%s {
			id = %q
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = 1700000000
			creation_host = "fixture"
			segment_count = 1

			segment1 {
				start_extent = 0
				extent_count = %d

				%s
			}
		}
`, name, id, extents, seg)
}

// Simple makes img (an existing file) one LVM physical volume holding VG
// vg with linear LVs of the given sizes (MiB, created in the order
// given), and returns each LV's byte offset in img as lvs and pvs report
// it.
func Simple(t testing.TB, dir, img, vg string, names []string, sizesMiB []int) map[string]int64 {
	t.Helper()
	lp := testutil.AttachLoop(t, img, testutil.LoopOptions{})
	defer lp.Detach()
	dev := lp.Dev
	sys := filepath.Join(dir, "lvm-etc-"+vg)
	os.MkdirAll(sys, 0o755)
	conf := "global { use_lvmetad = 0 }\nactivation { udev_sync = 0 udev_rules = 0 }\nbackup { backup = 0 archive = 0 }\ndevices { obtain_device_list_from_udev = 0 }\n"
	if err := os.WriteFile(filepath.Join(sys, "lvm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newLVMEnv(t, sys, lp)
	e.run("pvcreate", "-q", "-ff", "-y", dev)
	e.run("vgcreate", "-q", "-s", "4M", vg, dev)
	for i, n := range names {
		e.run("lvcreate", "-q", "-an", "-Zn", "-y", "-L", fmt.Sprintf("%dM", sizesMiB[i]), "-n", n, vg)
	}
	out := e.run("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_name,seg_pe_ranges", vg)
	peFields := strings.Fields(e.run("pvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start", dev))
	pe := peFields[len(peFields)-1] // after lvm's warnings
	peStart, err := strconv.ParseInt(pe, 10, 64)
	if err != nil {
		t.Fatalf("pvs pe_start %q", pe)
	}
	offs := map[string]int64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		m := regexp.MustCompile(`:(\d+)-\d+$`).FindStringSubmatch(f[1])
		if m == nil {
			continue // a warning
		}
		first, _ := strconv.ParseInt(m[1], 10, 64)
		offs[f[0]] = peStart + first*4*MiB
	}
	return offs
}

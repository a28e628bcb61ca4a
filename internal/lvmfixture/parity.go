package lvmfixture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/mdfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// ParityImageSize is the size of each image (rimage) LV Parity makes.
const ParityImageSize = 8 * MiB

// ParityLayouts maps the lvm2 raid4/5/6 segment types Parity can lay out
// to the md level and layout dm-raid runs them as (dm-raid's raid_types
// table: raid4 is md raid5 with parity on the first device; raid6 is
// raid6_zr).
var ParityLayouts = map[string]struct{ Level, Layout int }{
	"raid4":    {mdfixture.Level5, mdfixture.AlgParity0},
	"raid5_ls": {mdfixture.Level5, mdfixture.AlgLeftSymmetric},
	"raid6":    {mdfixture.Level6, mdfixture.AlgRotatingZeroRestart},
	"raid6_zr": {mdfixture.Level6, mdfixture.AlgRotatingZeroRestart},
	"raid6_nr": {mdfixture.Level6, mdfixture.AlgRotatingNRestart},
	"raid6_nc": {mdfixture.Level6, mdfixture.AlgRotatingNContinue},
}

// Parity makes images whole-disk physical volumes under dir (pv0.img,
// ...), VG vg on them and one raid LV "lv" of segment type segType
// (a key of ParityLayouts) with one rmeta and one rimage LV of
// ParityImageSize on each PV, 64 KiB stripes. lvcreate refuses raid LVs
// without the kernel driver, so the images are made as linear LVs and
// the raid LV is added to the text metadata and written back with
// vgcfgrestore (lvm2 checks it); data (at most the LV's size, returned)
// is laid out over the images as md does, P included, at the offsets
// lvs and pvs report.
func Parity(t testing.TB, dir, vg, segType string, images int, data []byte) (disks []string, size int64) {
	t.Helper()
	l, ok := ParityLayouts[segType]
	if !ok {
		t.Fatalf("lvmfixture.Parity: segment type %q", segType)
	}
	parity := 1
	if l.Level == mdfixture.Level6 {
		parity = 2
	}
	size = int64(images-parity) * ParityImageSize
	var devs []string
	var loops []*testutil.Loop
	where := map[string]string{}
	for i := range images {
		d := filepath.Join(dir, fmt.Sprintf("pv%d.img", i))
		f, err := os.Create(d)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(16 * MiB)
		f.Close()
		// Pinned (testutil.AttachLoop): a stray `losetup -d` of a reused
		// name by another test cannot take a PV away mid-build ("VG vgp
		// is missing PV ... last written to /dev/loop2").
		lp := testutil.AttachLoop(t, d, testutil.LoopOptions{})
		dev := lp.Dev
		loops = append(loops, lp)
		disks, devs = append(disks, d), append(devs, dev)
		where[dev] = d
	}
	sys := filepath.Join(dir, "lvm-etc")
	os.MkdirAll(sys, 0o755)
	conf := "global { use_lvmetad = 0 }\nactivation { udev_sync = 0 udev_rules = 0 }\nbackup { backup = 0 archive = 0 }\ndevices { obtain_device_list_from_udev = 0 }\n"
	if err := os.WriteFile(filepath.Join(sys, "lvm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newLVMEnv(t, sys, loops...)
	e.run(append([]string{"pvcreate", "-q", "-ff", "-y"}, devs...)...)
	e.run(append([]string{"vgcreate", "-q", "-s", "4M", vg}, devs...)...)
	var raids []string
	for i, dev := range devs {
		for _, k := range []struct{ kind, size string }{{"rmeta", "4M"}, {"rimage", "8M"}} {
			e.run("lvcreate", "-q", "-an", "-Zn", "-y", "-L", k.size, "-n", fmt.Sprintf("tmp%s%d", k.kind, i), vg, dev)
			raids = append(raids, fmt.Sprintf("%q", fmt.Sprintf("lv_%s_%d", k.kind, i)))
		}
	}
	backup := filepath.Join(dir, "vg.txt")
	e.run("vgcfgbackup", "-q", "-f", backup, vg)
	text, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	s := string(text)
	for i := range devs {
		for _, kind := range []string{"rmeta", "rimage"} {
			re := regexp.MustCompile(`(?s)\n\t\ttmp` + kind + strconv.Itoa(i) + ` \{(.*?status = \[)"READ", "WRITE", "VISIBLE"\]`)
			if !re.MatchString(s) {
				t.Fatalf("metadata: no section for tmp%s%d:\n%s", kind, i, s)
			}
			s = re.ReplaceAllString(s, fmt.Sprintf("\n\t\tlv_%s_%d {${1}\"READ\", \"WRITE\"]", kind, i))
		}
	}
	lv := lvSection("lv", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa7", size/(4*MiB), fmt.Sprintf(`type = %q
				device_count = %d
				region_size = 8192
				stripe_size = 128
				raids = [%s]`, segType, images, strings.Join(raids, ", ")))
	i := strings.Index(s, "logical_volumes {\n")
	if i < 0 {
		t.Fatalf("metadata without logical_volumes:\n%s", s)
	}
	i += len("logical_volumes {\n")
	s = s[:i] + lv + s[i:]
	if err := os.WriteFile(backup, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	e.run("vgcfgrestore", "-q", "--force", "-f", backup, vg)

	// lvm2's own view: the LV's type, and where each image starts.
	if got := strings.Fields(e.run("lvs", "--noheadings", "-o", "segtype", vg+"/lv")); len(got) == 0 || got[len(got)-1] != segType {
		t.Fatalf("lvs shows segment type %v for %s, want %s", got, vg+"/lv", segType)
	}
	var lvs struct {
		Report []struct {
			LV []struct {
				Name   string `json:"lv_name"`
				Ranges string `json:"seg_pe_ranges"`
			} `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(jsonPart(e.run("lvs", "-a", "--reportformat", "json", "-o", "lv_name,seg_pe_ranges", vg))), &lvs); err != nil {
		t.Fatal(err)
	}
	offs := map[string]struct {
		img string
		off int64
	}{}
	for _, l := range lvs.Report[0].LV {
		m := regexp.MustCompile(`^(\S+):(\d+)-(\d+)$`).FindStringSubmatch(l.Ranges)
		if m == nil || where[m[1]] == "" {
			continue // the raid LV itself (its ranges name its images)
		}
		first, _ := strconv.ParseInt(m[2], 10, 64)
		pe := strings.Fields(e.run("pvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start", m[1]))
		peStart, err := strconv.ParseInt(pe[len(pe)-1], 10, 64)
		if err != nil {
			t.Fatalf("pvs pe_start %v", pe)
		}
		offs[strings.Trim(l.Name, "[]")] = struct {
			img string
			off int64
		}{where[m[1]], peStart + first*4*MiB}
	}
	if int64(len(data)) > size {
		t.Fatalf("lvmfixture.Parity: %d bytes for an LV of %d", len(data), size)
	}
	spec := mdfixture.Spec{Level: l.Level, Layout: l.Layout, Chunk: 64 << 10, Members: images, MemberLen: ParityImageSize, Raw: true}
	for i, m := range spec.LayOut(data) {
		at, ok := offs[fmt.Sprintf("lv_rimage_%d", i)]
		if !ok {
			t.Fatalf("lvs shows no range for lv_rimage_%d", i)
		}
		f, err := os.OpenFile(at.img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteAt(m, at.off)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return disks, size
}

package ldm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/ldmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
)

const mib = 1 << 20

var vols = []ldmfixture.Volume{
	{Name: "Simple", Size: 8 * mib, Comps: []ldmfixture.Component{{Parts: []ldmfixture.Part{{Disk: 0, Start: 0, Size: 8 * mib}}}}},
	{Name: "Spanned", Size: 16 * mib, Comps: []ldmfixture.Component{{Parts: []ldmfixture.Part{
		{Disk: 0, Start: 8 * mib, Size: 8 * mib}, {Disk: 1, Start: 0, Size: 8 * mib, VolOffset: 8 * mib}}}}},
	{Name: "Striped", Size: 16 * mib, Comps: []ldmfixture.Component{{Striped: true, Stripe: 64 << 10, Parts: []ldmfixture.Part{
		{Disk: 0, Start: 16 * mib, Size: 8 * mib, Index: 0}, {Disk: 1, Start: 8 * mib, Size: 8 * mib, Index: 1}}}}},
	{Name: "Mirror", Size: 8 * mib, Comps: []ldmfixture.Component{
		{Parts: []ldmfixture.Part{{Disk: 0, Start: 24 * mib, Size: 8 * mib}}},
		{Parts: []ldmfixture.Part{{Disk: 1, Start: 16 * mib, Size: 8 * mib}}}}},
}

// layout writes each volume's bytes where the fixture placed its parts,
// and returns the bytes.
func layout(imgs [][]byte) map[string][]byte {
	want := map[string][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range vols {
		data := make([]byte, v.Size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want[v.Name] = data
		ldmfixture.Place(imgs, v, data)
	}
	return want
}

func regions(imgs [][]byte, skip int) []partinfo.Region {
	var out []partinfo.Region
	for i, b := range imgs {
		if i != skip {
			out = append(out, partinfo.Region{Name: "disk" + string(rune('0'+i)), R: bytes.NewReader(b), Size: int64(len(b))})
		}
	}
	return out
}

// crossCheck compares every volume and partition with what ldmtool
// (libldm, an independent reader) makes of the same disks.
func crossCheck(t *testing.T, set *Set, ldmtool func(args ...string) []byte) {
	var dg struct{ GUID string }
	if err := json.Unmarshal(ldmtool("show", "diskgroup", "9a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff"), &dg); err != nil || dg.GUID == "" {
		t.Fatalf("ldmtool show diskgroup: %v", err)
	}
	for _, v := range set.Volumes {
		var lv struct {
			Type       string
			Size       int64
			ChunkSize  int64 `json:"chunk-size"`
			Partitions []string
		}
		if err := json.Unmarshal(ldmtool("show", "volume", dg.GUID, v.Name), &lv); err != nil {
			t.Fatal(err)
		}
		if !strings.EqualFold(lv.Type, v.Type) || lv.Size*sector != v.Size { // ldmtool says "RAID5"
			t.Errorf("%s: type %s size %d; ldmtool: %s, %d sectors", v.Name, v.Type, v.Size, lv.Type, lv.Size)
		}
		var ours []string
		for _, pl := range v.plexes {
			if (pl.typ == compStripe || pl.typ == compRAID5) && lv.ChunkSize*sector != pl.stripe {
				t.Errorf("%s: stripe %d; ldmtool chunk %d sectors", v.Name, pl.stripe, lv.ChunkSize)
			}
			for _, p := range pl.parts {
				ours = append(ours, fmt.Sprintf("%s:%s:%d:%d", p.name, p.diskName, p.start/sector, p.size/sector))
			}
		}
		var theirs []string
		for _, name := range lv.Partitions {
			var lp struct {
				Name        string
				Start, Size int64
				Disk        string
			}
			if err := json.Unmarshal(ldmtool("show", "partition", dg.GUID, name), &lp); err != nil {
				t.Fatal(err)
			}
			theirs = append(theirs, fmt.Sprintf("%s:%s:%d:%d", lp.Name, lp.Disk, lp.Start, lp.Size))
		}
		sort.Strings(ours)
		sort.Strings(theirs)
		if strings.Join(ours, " ") != strings.Join(theirs, " ") {
			t.Errorf("%s: partitions %v; ldmtool %v", v.Name, ours, theirs)
		}
	}
}

// ldmtoolOn returns a runner of ldmtool over the disk image files given,
// or nil where ldmtool is not installed (outside CI, where it is
// required).
func ldmtoolOn(t *testing.T, paths []string) func(args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("ldmtool"); err != nil && !testutil.InCI() {
		return nil
	}
	testutil.RequireTools(t, "ldmtool")
	var a []string
	for _, p := range paths {
		a = append(a, "-d", p)
	}
	return func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command("ldmtool", append(append([]string(nil), a...), args...)...).Output()
		if err != nil {
			t.Fatalf("ldmtool %v: %v", args, err)
		}
		return out
	}
}

// ldmtoolFor is ldmtoolOn over disk images in memory, written to files.
func ldmtoolFor(t *testing.T, imgs [][]byte) func(args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("ldmtool"); err != nil && !testutil.InCI() {
		return nil
	}
	dir := t.TempDir()
	var paths []string
	for i, b := range imgs {
		p := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return ldmtoolOn(t, paths)
}

func TestVolumes(t *testing.T) {
	imgs := ldmfixture.Build([]int64{64 * mib, 64 * mib}, vols)
	want := layout(imgs)
	ldmtool := ldmtoolFor(t, imgs)
	set, err := Scan(context.Background(), regions(imgs, -1))
	if err != nil {
		t.Fatal(err)
	}
	if ldmtool != nil {
		crossCheck(t, set, ldmtool)
	}
	if len(set.Problems) > 0 || len(set.Disks) != 2 || len(set.Volumes) != len(vols) {
		t.Fatalf("problems %q, %d disks, %d volumes", set.Problems, len(set.Disks), len(set.Volumes))
	}
	types := map[string]string{"Simple": "simple", "Spanned": "spanned", "Striped": "striped", "Mirror": "mirrored"}
	for _, v := range set.Volumes {
		if v.Type != types[v.Name] || v.Size != int64(len(want[v.Name])) {
			t.Errorf("%s: type %s size %d", v.Name, v.Type, v.Size)
		}
		r, err := v.Open()
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		got := make([]byte, v.Size)
		for off := 0; off < len(got); off += 100000 {
			if _, err := r.ReadAt(got[off:min(off+100000, len(got))], int64(off)); err != nil && off+100000 < len(got) {
				t.Fatalf("%s at %d: %v", v.Name, off, err)
			}
		}
		if !bytes.Equal(got, want[v.Name]) {
			t.Errorf("%s reads different bytes", v.Name)
		}
	}
	// Without disk 1: Simple and the mirror read, the others name the disk.
	set, err = Scan(context.Background(), regions(imgs, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range set.Volumes {
		_, err := v.Open()
		switch v.Name {
		case "Simple", "Mirror":
			if err != nil {
				t.Errorf("%s without disk 1: %v", v.Name, err)
			}
		default:
			if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "Disk2") {
				t.Errorf("%s without disk 1: %v", v.Name, err)
			}
		}
	}
}

// TestGPTDynamicDisks: the same volumes on GPT dynamic disks (PRIVHEAD at
// the end of the LDM metadata partition), checked with ldmtool too.
func TestGPTDynamicDisks(t *testing.T) {
	testutil.RequireTools(t, "sgdisk")
	paths := ldmfixture.BuildGPT(t, t.TempDir(), []int64{64 * mib, 64 * mib}, vols)
	var imgs [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, b)
	}
	want := layout(imgs)
	set, err := Scan(context.Background(), regions(imgs, -1))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Problems) > 0 || len(set.Disks) != 2 || len(set.Volumes) != len(vols) {
		t.Fatalf("problems %q, %d disks, %d volumes", set.Problems, len(set.Disks), len(set.Volumes))
	}
	if ldmtool := ldmtoolOn(t, paths); ldmtool != nil {
		crossCheck(t, set, ldmtool)
	}
	for _, v := range set.Volumes {
		r, err := v.Open()
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		got := make([]byte, v.Size)
		if _, err := r.ReadAt(got, 0); err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if !bytes.Equal(got, want[v.Name]) {
			t.Errorf("%s reads different bytes", v.Name)
		}
	}
}

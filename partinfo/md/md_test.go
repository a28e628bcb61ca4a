package md

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/mdfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

type spec = mdfixture.Spec

var specs = []spec{
	{Version: "0.90", Level: Level1, Members: 2, MemberLen: 3 << 20, Name: "boot"},
	{Version: "1.0", Level: Level1, Members: 3, MemberLen: 3 << 20, Name: "boot10"},
	{Version: "1.1", Level: Level0, Chunk: 64 << 10, Members: 3, MemberLen: 3 << 20, Name: "stripe"},
	{Version: "1.2", Level: LevelLinear, Members: 2, MemberLen: 3 << 20, Name: "lin"},
	{Version: "1.2", Level: Level10, Layout: 0x102, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20, Name: "r10"},
	{Version: "1.2", Level: Level10, Layout: 0x102, Chunk: 32 << 10, Members: 3, MemberLen: 3 << 20, Name: "r10odd"},
	{Version: "1.2", Level: Level5, Layout: algLeftSymmetric, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20, Name: "r5"},
	{Version: "1.2", Level: Level5, Layout: algLeftAsymmetric, Chunk: 16 << 10, Members: 3, MemberLen: 3 << 20, Name: "r5la"},
	{Version: "1.2", Level: Level5, Layout: algRightSymmetric, Chunk: 16 << 10, Members: 5, MemberLen: 3 << 20, Name: "r5rs"},
	{Version: "0.90", Level: Level5, Layout: algLeftSymmetric, Chunk: 64 << 10, Members: 3, MemberLen: 3 << 20, Name: "r5old"},
	{Version: "1.2", Level: Level6, Layout: algLeftSymmetric, Chunk: 64 << 10, Members: 5, MemberLen: 3 << 20, Name: "r6"},
	{Version: "1.2", Level: Level4, Chunk: 64 << 10, Members: 3, MemberLen: 3 << 20, Name: "r4"},
	// raid0 over members of different sizes: two and three strip zones,
	// the alternate and the original layout.
	{Version: "1.2", Level: Level0, Layout: 2, Chunk: 64 << 10, Members: 3, MemberLens: []int64{3<<20 + 64<<10, 4 << 20, 5<<20 + 64<<10}, Name: "zones-alt"},
	{Version: "1.1", Level: Level0, Layout: 1, Chunk: 32 << 10, Members: 4, MemberLens: []int64{2 << 20, 3 << 20, 3 << 20, 5 << 20}, Name: "zones-orig"},
	{Version: "0.90", Level: Level0, Layout: 2, Chunk: 16 << 10, Members: 2, MemberLens: []int64{2 << 20, 3 << 20}, Name: "zones-old"},
	// raid10 far and offset copies.
	{Version: "1.2", Level: Level10, Layout: 0x201, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20, Name: "r10f2"},
	{Version: "1.2", Level: Level10, Layout: 0x201, Chunk: 32 << 10, Members: 3, MemberLen: 3<<20 + 96<<10, Name: "r10f2odd"},
	{Version: "1.0", Level: Level10, Layout: 0x301, Chunk: 16 << 10, Members: 4, MemberLen: 3 << 20, Name: "r10f3"},
	{Version: "1.2", Level: Level10, Layout: 0x10201, Chunk: 64 << 10, Members: 3, MemberLen: 3 << 20, Name: "r10o2"},
	{Version: "1.2", Level: Level10, Layout: 0x10301, Chunk: 32 << 10, Members: 4, MemberLen: 3 << 20, Name: "r10o3"},
	// raid10 far sets (layout bits 17-18): far copies rotate within sets
	// of near*far members (kind 2) or members/far (kind 1); the last set
	// takes the members left over. Laid out by raid10_find_virt.
	{Version: "1.2", Level: Level10, Layout: 2<<17 | 0x201, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20, Name: "r10f2sets"},
	{Version: "1.2", Level: Level10, Layout: 2<<17 | 0x201, Chunk: 32 << 10, Members: 5, MemberLen: 3<<20 + 96<<10, Name: "r10f2sets5"},
	{Version: "1.0", Level: Level10, Layout: 2<<17 | 0x202, Chunk: 16 << 10, Members: 8, MemberLen: 3 << 20, Name: "r10n2f2sets"},
	{Version: "1.2", Level: Level10, Layout: 2<<17 | 0x10201, Chunk: 64 << 10, Members: 5, MemberLen: 3 << 20, Name: "r10o2sets5"},
	{Version: "1.2", Level: Level10, Layout: 1<<17 | 0x201, Chunk: 32 << 10, Members: 6, MemberLen: 3 << 20, Name: "r10f2sets1"},
}

func devicesOf(t *testing.T, paths []string, skip int) []Device {
	var devs []Device
	for i, p := range paths {
		if i == skip {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, Device{Name: p, R: bytes.NewReader(b), Size: int64(len(b))})
	}
	return devs
}

// TestArrays lays out each level and superblock version, checks the
// superblocks with mdadm --examine, and reads the array back whole and
// with one member missing.
func TestArrays(t *testing.T) {
	haveMdadm := true
	if testutil.InCI() {
		testutil.RequireTools(t, "mdadm")
	} else if _, err := os.Stat("/usr/sbin/mdadm"); err != nil {
		haveMdadm = false
	}
	for _, s := range specs {
		t.Run(s.Name+"-"+s.Version, func(t *testing.T) {
			dir := t.TempDir()
			data := make([]byte, s.ArraySize())
			rng := rand.New(rand.NewPCG(uint64(s.Members), uint64(s.Level+10)))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			paths := s.Build(t, dir, data)
			if haveMdadm {
				out := mdfixture.Examine(t, paths[0])
				if lvl := mdfixture.FieldOf(out, "Raid Level"); lvl != LevelName(s.Level) {
					t.Errorf("mdadm --examine: Raid Level %q, want %s\n%s", lvl, LevelName(s.Level), out)
				}
				if !strings.Contains(mdfixture.FieldOf(out, "Checksum"), "correct") {
					t.Errorf("mdadm --examine: checksum not correct\n%s", out)
				}
				if v := mdfixture.FieldOf(out, "Version"); v != s.Version && !(s.Version == "0.90" && v == "0.90.00") {
					t.Errorf("mdadm --examine: Version %q, want %s", v, s.Version)
				}
				t.Logf("mdadm --examine %s: Layout %q, Array Size %q, Used Dev Size %q", paths[0], mdfixture.FieldOf(out, "Layout"),
					mdfixture.FieldOf(out, "Array Size"), mdfixture.FieldOf(out, "Used Dev Size"))
				if want := r10LayoutName(s.Layout); s.Level == Level10 && mdfixture.FieldOf(out, "Layout") != want {
					t.Errorf("mdadm --examine: Layout %q, want %q", mdfixture.FieldOf(out, "Layout"), want)
				}
			}
			set, err := Scan(context.Background(), devicesOf(t, paths, -1))
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Arrays) != 1 || len(set.Problems) > 0 {
				t.Fatalf("%d arrays, problems %q", len(set.Arrays), set.Problems)
			}
			a := set.Arrays[0]
			if haveMdadm {
				out := mdfixture.Examine(t, paths[0])
				uuid := mdfixture.FieldOf(out, "Array UUID")
				if uuid == "" {
					uuid = mdfixture.FieldOf(out, "UUID")
				}
				if uuid != a.UUID {
					t.Errorf("UUID %s, mdadm says %s", a.UUID, uuid)
				}
				// mdadm prints the array size in KiB for 1.x (not for linear/raid0, which 0.90 and 1.x leave to the driver).
				if size := mdfixture.FieldOf(out, "Array Size"); size != "" && s.Level != Level0 && s.Level != LevelLinear {
					kib := strings.Fields(size)[0]
					want := s.ArraySize()
					if s.Level == Level10 {
						// mdadm --examine prints used size x members /
						// copies; the kernel (raid10_size, and the reader)
						// rounds each far part down to whole chunks first.
						want = s.Usable() * int64(s.Members) / int64(s.Layout&0xff*(s.Layout>>8&0xff))
					}
					if kib != fmt.Sprint(want/1024) {
						t.Errorf("array size %d KiB, mdadm says %s", want/1024, kib)
					}
				}
			}
			if len(a.Problems) > 0 {
				t.Errorf("array problems %q", a.Problems)
			}
			wantName := s.Name
			if s.Version == "0.90" {
				wantName = "md3"
			}
			if a.Name != wantName {
				t.Errorf("name %q, want %q", a.Name, wantName)
			}
			readAll(t, a, data)
			if d := a.DeclaredSize(); d != int64(len(data)) {
				t.Errorf("declared size %d, the array has %d bytes", d, len(data))
			}

			// One member missing.
			set, err = Scan(context.Background(), devicesOf(t, paths, 1))
			if err != nil {
				t.Fatal(err)
			}
			a = set.Arrays[0]
			if !strings.Contains(strings.Join(a.Problems, "\n"), "slot 1") {
				t.Errorf("missing member not reported: %q", a.Problems)
			}
			v, err := a.Open()
			switch s.Level {
			case Level0, LevelLinear:
				if !errors.Is(err, ErrMissing) {
					t.Errorf("%s with a member missing: %v, want ErrMissing", LevelName(s.Level), err)
				}
			default:
				if err != nil {
					t.Fatalf("degraded: %v", err)
				}
				got := make([]byte, v.Size())
				if _, err := v.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Error("degraded array reads different bytes")
				}
			}
		})
	}
}

func readAll(t *testing.T, a *Array, data []byte) {
	t.Helper()
	v, err := a.Open()
	if err != nil {
		t.Fatal(err)
	}
	if v.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", v.Size(), len(data))
	}
	got := make([]byte, v.Size())
	// Odd-sized reads cross chunk and member boundaries.
	for off := 0; off < len(got); off += 12345 {
		end := min(off+12345, len(got))
		if _, err := v.ReadAt(got[off:end], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		for i := range got {
			if got[i] != data[i] {
				t.Fatalf("first difference at byte %d", i)
			}
		}
	}
}

// A stale member (fewer events) is left out; a damaged superblock is
// reported and the member not used.
func TestStaleAndCorrupt(t *testing.T) {
	s := spec{Version: "1.2", Level: Level1, Members: 3, MemberLen: 3 << 20, Name: "m"}
	dir := t.TempDir()
	data := bytes.Repeat([]byte("cairn"), int(s.ArraySize()/5)+1)[:s.ArraySize()]
	paths := s.Build(t, dir, data)
	devs := devicesOf(t, paths, -1)
	// member 0: events 40 (stale) and different data.
	b0, _ := os.ReadFile(paths[0])
	sb := b0[4096 : 4096+1024]
	sb[200] = 40
	le := func(b []byte) { csumFix(b) }
	le(sb)
	copy(b0[mdfixture.DataOff1x:], "STALE")
	devs[0].R = bytes.NewReader(b0)
	// member 2: flipped byte in its superblock.
	b2, _ := os.ReadFile(paths[2])
	b2[4096+100] ^= 1
	devs[2].R = bytes.NewReader(b2)
	set, err := Scan(context.Background(), devs)
	if err != nil {
		t.Fatal(err)
	}
	a := set.Arrays[0]
	if p := strings.Join(a.Problems, "\n"); !strings.Contains(p, "stale") {
		t.Errorf("problems %q", a.Problems)
	}
	if p := strings.Join(set.Problems, "\n"); !strings.Contains(p, "checksum") {
		t.Errorf("set problems %q", set.Problems)
	}
	readAll(t, a, data)
}

func csumFix(b []byte) {
	maxDev := int(b[220])
	c := csum1(b[:256+2*maxDev])
	b[216], b[217], b[218], b[219] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
}

// FuzzSuperblock examines mutated 1.2 and 0.90 superblocks (checksums
// refreshed) and reads what assembles.
func FuzzSuperblock(f *testing.F) {
	s := spec{Version: "1.2", Level: Level5, Layout: algLeftSymmetric, Chunk: 4096, Members: 3, MemberLen: 1 << 20, Name: "f"}
	img := make([]byte, s.MemberLen)
	s.Super1(img, []byte("0123456789abcdef"), 0)
	o := spec{Version: "0.90", Level: Level1, Members: 2, MemberLen: 1 << 20}
	img0 := make([]byte, o.MemberLen)
	o.Super090(img0, []byte("0123456789abcdef"), 0)
	off0 := o.MemberLen&^(reserved090-1) - reserved090
	f.Add(img[4096:4096+300], img0[off0:off0+600], img0[off0+3968:off0+4096])
	f.Fuzz(func(t *testing.T, sb1, sb0, desc []byte) {
		a := bytes.Clone(img)
		copy(a[4096:4096+1024], sb1)
		if a[4096+220] < 100 {
			csumFix(a[4096 : 4096+1024])
		}
		b := bytes.Clone(img0)
		copy(b[off0:], sb0)
		copy(b[off0+3968:off0+4096], desc)
		var sum uint64
		for i := 0; i < 1024; i++ {
			if i != 38 {
				sum += uint64(uint32(b[off0+int64(4*i)]) | uint32(b[off0+int64(4*i)+1])<<8 | uint32(b[off0+int64(4*i)+2])<<16 | uint32(b[off0+int64(4*i)+3])<<24)
			}
		}
		c := uint32(sum&0xffffffff + sum>>32)
		b[off0+152], b[off0+153], b[off0+154], b[off0+155] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		devs := []Device{{Name: "a", R: bytes.NewReader(a), Size: int64(len(a))}, {Name: "b", R: bytes.NewReader(b), Size: int64(len(b))}}
		set, err := Scan(context.Background(), devs)
		if err != nil {
			t.Fatal(err)
		}
		for _, arr := range set.Arrays {
			v, err := arr.Open()
			if err != nil {
				continue
			}
			buf := make([]byte, min(v.Size(), 1<<20))
			n, err := v.ReadAt(buf, 0)
			if err == nil && n != len(buf) {
				t.Fatalf("short read %d without an error", n)
			}
		}
	})
}

// r10LayoutName is how mdadm --examine names a raid10 layout
// (print_r10_layout, which says nothing of far sets).
func r10LayoutName(layout int) string {
	near, far := layout&0xff, layout>>8&0xff
	var parts []string
	if near != 1 {
		parts = append(parts, fmt.Sprintf("near=%d", near))
	}
	if far != 1 {
		kind := "far"
		if layout>>16&1 == 1 {
			kind = "offset"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", kind, far))
	}
	return strings.Join(parts, ", ")
}

// TestRaid0ZonesNeedLayout: a raid0 over members of different sizes whose
// superblock names no layout (neither original nor alternate) is refused
// with ErrUnsupported, as the kernel refuses to assemble it; one of equal
// members needs none.
func TestRaid0ZonesNeedLayout(t *testing.T) {
	for _, c := range []struct {
		lens []int64
		ok   bool
	}{{[]int64{2 << 20, 3 << 20}, false}, {[]int64{3 << 20, 3 << 20}, true}} {
		s := spec{Version: "1.2", Level: Level0, Chunk: 64 << 10, Members: 2, MemberLens: c.lens, Name: "nolayout"}
		data := bytes.Repeat([]byte{7}, int(s.ArraySize()))
		set, err := Scan(context.Background(), devicesOf(t, s.Build(t, t.TempDir(), data), -1))
		if err != nil || len(set.Arrays) != 1 {
			t.Fatalf("%v %v", set, err)
		}
		_, err = set.Arrays[0].Open()
		if c.ok && err != nil {
			t.Errorf("equal members without a layout: %v", err)
		}
		if !c.ok && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "layout-original")) {
			t.Errorf("members of different sizes without a layout: %v, want ErrUnsupported naming the fix", err)
		}
	}
}

// FuzzGeometry opens arrays of any level, layout, chunk and member sizes
// (raid0 strip zones, raid10 near/far/offset copies, parity) and reads
// them whole: every read either fills the buffer from inside the members
// or fails, never panics or reads past a member's data area.
func FuzzGeometry(f *testing.F) {
	f.Add(int8(0), uint32(2), uint8(3), []byte{3, 4, 5})
	f.Add(int8(0), uint32(1), uint8(2), []byte{2, 3, 3, 5})
	f.Add(int8(10), uint32(0x201), uint8(3), []byte{4, 4, 4})
	f.Add(int8(10), uint32(0x10301), uint8(2), []byte{6, 6, 6, 6})
	f.Add(int8(10), uint32(0x102), uint8(3), []byte{4, 4, 4, 4})
	f.Add(int8(5), uint32(2), uint8(3), []byte{4, 4, 4})
	f.Add(int8(10), uint32(2<<17|0x201), uint8(2), []byte{4, 4, 4, 4, 4})
	f.Add(int8(10), uint32(1<<17|0x10202), uint8(1), []byte{5, 5, 5, 5, 5, 5, 5})
	f.Fuzz(func(t *testing.T, level int8, layout uint32, chunkLog uint8, sizes []byte) {
		if len(sizes) == 0 || len(sizes) > 8 {
			return
		}
		chunk := int64(512) << (chunkLog % 8)
		a := &Array{Name: "fuzz", Level: int(level), Layout: int(layout), Chunk: chunk, RaidDisks: len(sizes)}
		for i, s := range sizes {
			size := int64(s%32) * 4096
			dev := Device{Name: fmt.Sprint(i), R: bytes.NewReader(make([]byte, size)), Size: size}
			a.Members = append(a.Members, &Member{Device: dev, DataSize: size, Role: i})
		}
		v, err := a.Open()
		if err != nil {
			return
		}
		if v.Size() > 32*4096*int64(len(sizes)) {
			t.Fatalf("array of %d bytes from %d members of at most 128 KiB", v.Size(), len(sizes))
		}
		buf := make([]byte, v.Size())
		if n, err := v.ReadAt(buf, 0); err != nil || n != len(buf) {
			t.Fatalf("read %d of %d: %v", n, len(buf), err)
		}
	})
}

// TestRaid10EveryCopy reads every copy of every chunk of each raid10
// fixture (laid out by md(4)'s description, or by raid10_find_virt for
// far sets) where __raid10_find_phys puts it: a read of the whole array
// only meets the first copy of each chunk.
func TestRaid10EveryCopy(t *testing.T) {
	for _, s := range specs {
		if s.Level != Level10 {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			data := make([]byte, s.ArraySize())
			rng := rand.New(rand.NewPCG(uint64(s.Members), uint64(s.Layout)))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			set, err := Scan(context.Background(), devicesOf(t, s.Build(t, t.TempDir(), data), -1))
			if err != nil || len(set.Arrays) != 1 {
				t.Fatalf("%v %v", set, err)
			}
			a := set.Arrays[0]
			g, err := a.raid10Geometry(a.perMember())
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, s.Chunk)
			for c := int64(0); c < g.size/s.Chunk; c++ {
				want := data[c*s.Chunk : (c+1)*s.Chunk]
				cps := g.copies(c, 0)
				if int64(len(cps)) != g.near*g.far {
					t.Fatalf("chunk %d: %d copies, want %d", c, len(cps), g.near*g.far)
				}
				seen := map[int64]bool{}
				for _, cp := range cps {
					if seen[cp[0]] {
						t.Fatalf("chunk %d: two copies on member %d: %v", c, cp[0], cps)
					}
					seen[cp[0]] = true
					if err := a.member(int(cp[0]), buf, cp[1]); err != nil || !bytes.Equal(buf, want) {
						t.Fatalf("chunk %d: copy on member %d at %d: %v, bytes equal %v", c, cp[0], cp[1], err, bytes.Equal(buf, want))
					}
				}
			}
		})
	}
}

// TestRaid10FarSetMembers: the members holding each copy of the first
// chunks with far sets, worked out by hand from the kernel's description
// (commit 475901aff158, "Improve redundancy for 'far' and 'offset'
// algorithms"): a far copy moves near members on within its set, and the
// last set takes the members left over.
func TestRaid10FarSetMembers(t *testing.T) {
	for _, c := range []struct {
		layout, disks int
		want          string // members of each copy of chunks 0, 1, ...
	}{
		{0x201, 4, "0,1 1,2 2,3 3,0"},                 // original: one set of all
		{2<<17 | 0x201, 4, "0,1 1,0 2,3 3,2"},         // sets {0,1} {2,3}
		{2<<17 | 0x201, 5, "0,1 1,0 2,3 3,4 4,2"},     // sets {0,1} {2,3,4}
		{1<<17 | 0x201, 6, "0,1 1,2 2,0 3,4 4,5 5,3"}, // disks/far: sets of 3
		{2<<17 | 0x202, 8, "0,2,1,3 2,0,3,1 4,6,5,7 6,4,7,5"},
		{2<<17 | 0x10201, 5, "0,1 1,0 2,3 3,4 4,2"},
	} {
		a := &Array{Name: "t", Layout: c.layout, Chunk: 4096, RaidDisks: c.disks}
		g, err := a.raid10Geometry(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for ch := int64(0); len(got) < len(strings.Fields(c.want)); ch++ {
			var ds []string
			for _, cp := range g.copies(ch, 0) {
				ds = append(ds, fmt.Sprint(cp[0]))
			}
			got = append(got, strings.Join(ds, ","))
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("layout %#x over %d: copies on %s, want %s", c.layout, c.disks, strings.Join(got, " "), c.want)
		}
	}
}

// TestRaid10PairMissing: a near-2 raid10 missing both members of a pair
// has chunks with no copy: Open refuses it (ErrMissing, as the kernel does)
// instead of opening a volume whose reads fail, and DeclaredSize still
// gives its size; missing one member of each pair opens.
func TestRaid10PairMissing(t *testing.T) {
	s := spec{Version: "1.2", Level: Level10, Layout: 0x102, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20, Name: "r10"}
	data := make([]byte, s.ArraySize())
	for i := range data {
		data[i] = byte(i / 4096)
	}
	paths := s.Build(t, t.TempDir(), data)
	for _, tc := range []struct {
		keep []int
		ok   bool
	}{{[]int{2, 3}, false}, {[]int{0, 1}, false}, {[]int{0, 3}, true}, {[]int{1, 2}, true}} {
		var kept []string
		for _, i := range tc.keep {
			kept = append(kept, paths[i])
		}
		set, err := Scan(context.Background(), devicesOf(t, kept, -1))
		if err != nil {
			t.Fatal(err)
		}
		a := set.Arrays[0]
		v, err := a.Open()
		if tc.ok {
			if err != nil {
				t.Errorf("members %v: %v", tc.keep, err)
				continue
			}
			got := make([]byte, v.Size())
			if _, err := v.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
				t.Errorf("members %v: read %v, same bytes %v", tc.keep, err, bytes.Equal(got, data))
			}
			continue
		}
		if !errors.Is(err, ErrMissing) {
			t.Errorf("members %v: open %v, want ErrMissing", tc.keep, err)
		}
		if d := a.DeclaredSize(); d != int64(len(data)) {
			t.Errorf("members %v: declared size %d, want %d", tc.keep, d, len(data))
		}
	}
}

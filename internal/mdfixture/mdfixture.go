// Package mdfixture lays out Linux MD RAID members by hand, for tests on
// machines without the md driver: superblocks 0.90 and 1.x written from
// the published format (include/uapi/linux/raid/md_p.h; checked with
// mdadm --examine by the tests) and data placed as drivers/md places it
// (raid0 with strip zones/linear/raid1/raid10 near, far and offset, also in
// far sets/raid4/
// raid5/raid6 with parity).
package mdfixture

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Levels and raid5/6 layouts, as md_p.h numbers them.
const (
	LevelLinear       = -1
	Level0            = 0
	Level1            = 1
	Level4            = 4
	Level5            = 5
	Level6            = 6
	Level10           = 10
	AlgLeftAsymmetric = 0
	AlgRightSymmetric = 3
	AlgLeftSymmetric  = 2
	// AlgParity0 is raid5 with parity on the first member (dm-raid's raid4).
	AlgParity0 = 4
	// The DDF raid6 layouts dm-raid's raid6_zr, raid6_nr and raid6_nc use.
	AlgRotatingZeroRestart = 8
	AlgRotatingNRestart    = 9
	AlgRotatingNContinue   = 10
	mdMagic                = 0xa92b4efc
	sector                 = 512
	reserved090            = 64 << 10
)

// csum1 is the 1.x superblock checksum (calc_sb_1_csum).
func csum1(b []byte) uint32 {
	var sum uint64
	le := binary.LittleEndian
	n := len(b) &^ 3
	for i := 0; i < n; i += 4 {
		if i == 216 {
			continue
		}
		sum += uint64(le.Uint32(b[i:]))
	}
	if len(b)-n == 2 {
		sum += uint64(le.Uint16(b[n:]))
	}
	return uint32(sum&0xffffffff + sum>>32)
}

// FixCsum1 recomputes the checksum of a 1.x superblock in b.
func FixCsum1(b []byte) {
	maxDev := int(binary.LittleEndian.Uint32(b[220:]))
	binary.LittleEndian.PutUint32(b[216:], csum1(b[:256+2*maxDev]))
}

// Spec describes an array to lay out by hand (the md driver is not
// available here): its superblocks are written from the published format
// (md_p.h) and checked with mdadm --examine; its data are placed as
// drivers/md places them.
type Spec struct {
	Version   string // 0.90, 1.0, 1.1, 1.2
	Level     int
	Layout    int
	Chunk     int64
	Members   int
	MemberLen int64 // bytes of each member device
	// MemberLens, when set, gives each member its own size (raid0 over
	// members of different sizes: several strip zones).
	MemberLens []int64
	Name       string
	// Raw members have no superblock: data from offset 0 to MemberLen
	// (LVM raid images, whose superblock is in a separate rmeta LV).
	Raw bool
}

// DataOff1x is the data offset of 1.1/1.2 members.
const DataOff1x = 1 << 20 // data offset of 1.1/1.2 members (mdadm's default is larger; any is valid)

// DataArea is where a member's data lives (the first member's, when
// MemberLens gives them different sizes).
func (s Spec) DataArea() (off, size int64) { return s.dataAreaOf(0) }

// lenOf is the size of member i.
func (s Spec) lenOf(i int) int64 {
	if s.MemberLens != nil {
		return s.MemberLens[i]
	}
	return s.MemberLen
}

func (s Spec) dataAreaOf(i int) (off, size int64) {
	l := s.lenOf(i)
	if s.Raw {
		return 0, l
	}
	switch s.Version {
	case "0.90":
		return 0, l&^(reserved090-1) - reserved090
	case "1.0":
		sb := ((l/sector - 16) &^ 7) * sector
		return 0, sb - 4096 // leave room below the superblock
	default:
		return DataOff1x, l - DataOff1x
	}
}

// Usable is the bytes of each member the array uses (of the smallest
// member, when MemberLens gives them different sizes).
func (s Spec) Usable() int64 {
	u := s.usableOf(0)
	for i := 1; i < s.Members; i++ {
		u = min(u, s.usableOf(i))
	}
	return u
}

func (s Spec) usableOf(i int) int64 {
	_, size := s.dataAreaOf(i)
	if s.Chunk > 0 {
		size -= size % s.Chunk
	}
	return size
}

// raid10 layout fields (md_p.h / raid10.c setup_geo).
func (s Spec) r10() (near, far int64, offset bool) {
	return int64(s.Layout & 0xff), int64(s.Layout >> 8 & 0xff), s.Layout>>16&1 == 1
}

// arraySize is the size of the array built from the members.
// ArraySize is the size of the array.
func (s Spec) ArraySize() int64 {
	u := s.Usable()
	n := int64(s.Members)
	switch s.Level {
	case Level1:
		return u
	case Level0, LevelLinear:
		var sum int64
		for i := 0; i < s.Members; i++ {
			sum += s.usableOf(i)
		}
		return sum
	case Level10:
		near, far, _ := s.r10()
		return u / s.Chunk / far * n / near * s.Chunk
	case Level5, Level4:
		return u * (n - 1)
	case Level6:
		return u * (n - 2)
	}
	panic("level")
}

// layOut distributes data (the array's bytes) over member buffers as the
// md driver does, with parity.
// LayOut distributes the array's bytes over member data areas.
func (s Spec) LayOut(data []byte) [][]byte {
	n := s.Members
	u := s.Usable()
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, s.usableOf(i))
	}
	data = append(data, make([]byte, int(s.ArraySize())-len(data))...)
	switch s.Level {
	case Level1:
		for i := range out {
			copy(out[i], data)
		}
	case LevelLinear:
		for i := range out {
			copy(out[i], data[int64(i)*u:])
		}
	case Level0:
		s.layOutRaid0(out, data)
	case Level10:
		near, far, offset := s.r10()
		if s.Layout>>17 != 0 {
			s.layOutByVirt(out, data)
			break
		}
		if far > 1 {
			s.layOutFar(out, data, far, offset)
			break
		}
		// near copies: copy k of chunk c in slot c*near+k
		for c := int64(0); c*s.Chunk < int64(len(data)); c++ {
			for k := int64(0); k < near; k++ {
				slot := c*near + k
				copy(out[slot%int64(n)][(slot/int64(n))*s.Chunk:], data[c*s.Chunk:(c+1)*s.Chunk])
			}
		}
	case Level4, Level5, Level6:
		// raid5_compute_sector, written out per algorithm.
		parity := 1
		if s.Level == Level6 {
			parity = 2
		}
		dd := n - parity
		rows := int64(len(data)) / s.Chunk / int64(dd)
		for r := int64(0); r < rows; r++ {
			var pd, qd int
			slots := make([]int, dd)
			switch {
			case s.Level == Level4:
				pd = n - 1
				for i := range slots {
					slots[i] = i
				}
			case s.Level == Level5 && s.Layout == AlgLeftSymmetric:
				pd = dd - int(r%int64(n))
				for i := range slots {
					slots[i] = (pd + 1 + i) % n
				}
			case s.Level == Level5 && s.Layout == AlgLeftAsymmetric:
				pd = dd - int(r%int64(n))
				for i := range slots {
					slots[i] = i
					if i >= pd {
						slots[i] = i + 1
					}
				}
			case s.Level == Level5 && s.Layout == AlgRightSymmetric:
				pd = int(r % int64(n))
				for i := range slots {
					slots[i] = (pd + 1 + i) % n
				}
			case s.Level == Level5 && s.Layout == AlgParity0:
				pd = 0
				for i := range slots {
					slots[i] = i + 1
				}
			case s.Level == Level6 && (s.Layout == AlgRotatingZeroRestart || s.Layout == AlgRotatingNRestart):
				// P rotates up from 0 (zero restart) or down from n-2
				// (N restart), Q follows it; data restarts at 0.
				if s.Layout == AlgRotatingZeroRestart {
					pd = int(r % int64(n))
				} else {
					pd = n - 1 - int((r+1)%int64(n))
				}
				qd = pd + 1
				for i := range slots {
					switch {
					case pd == n-1: // Q D D D P
						qd, slots[i] = 0, i+1
					case i >= pd: // D D P Q D
						slots[i] = i + 2
					default:
						slots[i] = i
					}
				}
			case s.Level == Level6 && s.Layout == AlgRotatingNContinue:
				// Left-symmetric with Q just before P.
				pd = n - 1 - int(r%int64(n))
				qd = (pd + n - 1) % n
				for i := range slots {
					slots[i] = (pd + 1 + i) % n
				}
			case s.Level == Level6 && s.Layout == AlgLeftSymmetric:
				pd = n - 1 - int(r%int64(n))
				qd = (pd + 1) % n
				for i := range slots {
					slots[i] = (pd + 2 + i) % n
				}
			default:
				panic("layout")
			}
			P := make([]byte, s.Chunk)
			for i, slot := range slots {
				c := r*int64(dd) + int64(i)
				chunk := data[c*s.Chunk : (c+1)*s.Chunk]
				copy(out[slot][r*s.Chunk:], chunk)
				for x := range P {
					P[x] ^= chunk[x]
				}
			}
			copy(out[pd][r*s.Chunk:], P)
			if s.Level == Level6 {
				copy(out[qd][r*s.Chunk:], bytes.Repeat([]byte{0x51}, int(s.Chunk))) // Q is never read by cairn
			}
		}
	}
	return out
}

// layOutRaid0 stripes chunks over every member until the smallest is
// full, then over the members with room left (md(4): "collecting chunks
// into smaller stripes that only span the drives which still have
// remaining space"). Within a later zone the member of a chunk is the
// array chunk number modulo the zone's members (layout 1, original) or
// the chunk number within the zone (layout 2, alternate); single-zone
// arrays do not care.
func (s Spec) layOutRaid0(out [][]byte, data []byte) {
	var devStart, c int64 // member bytes below the zone; the next array chunk
	for c*s.Chunk < int64(len(data)) {
		var members []int
		zoneEnd := int64(-1)
		for i := range out {
			if l := int64(len(out[i])); l > devStart {
				members = append(members, i)
				if zoneEnd < 0 || l < zoneEnd {
					zoneEnd = l
				}
			}
		}
		nb := int64(len(members))
		for k := int64(0); k < (zoneEnd-devStart)/s.Chunk*nb; k++ {
			pick := c // layout 1, original
			if s.Layout == 2 {
				pick = k
			}
			copy(out[members[pick%nb]][devStart+k/nb*s.Chunk:], data[c*s.Chunk:(c+1)*s.Chunk])
			c++
		}
		devStart = zoneEnd
	}
}

// layOutFar places raid10 "far" and "offset" copies, one near copy
// (md(4)): far copies stripe all chunks RAID0-fashion over the first
// part of every member, then again over each later part, shifted one
// member on; offset copies duplicate each stripe in the next rows,
// shifted one member on each time.
func (s Spec) layOutFar(out [][]byte, data []byte, far int64, offset bool) {
	if near, _, _ := s.r10(); near != 1 {
		panic("mdfixture: far/offset with near copies")
	}
	n := int64(len(out))
	part := s.Usable() / s.Chunk / far // chunks of each far part
	for c := int64(0); c*s.Chunk < int64(len(data)); c++ {
		for f := int64(0); f < far; f++ {
			row := c/n + f*part
			if offset {
				row = c/n*far + f
			}
			copy(out[(c+f)%n][row*s.Chunk:], data[c*s.Chunk:(c+1)*s.Chunk])
		}
	}
}

// layOutByVirt fills every member chunk of a raid10 from the array chunk
// that drivers/md/raid10.c's raid10_find_virt says it holds (the reverse
// of __raid10_find_phys, which the reader follows): far sets (layout bits
// 17-18) and near copies with far or offset ones are laid out this way.
func (s Spec) layOutByVirt(out [][]byte, data []byte) {
	near, far, offset := s.r10()
	disks := int64(s.Members)
	var farSet int64
	switch s.Layout >> 17 {
	case 0:
		farSet = disks
	case 1:
		farSet = disks / far
	case 2:
		farSet = far * near
	default:
		panic("mdfixture: raid10 far-set kind")
	}
	// calc_sectors: the stride between far copies.
	chunks := s.Usable() / s.Chunk / far * disks / near
	devChunks := (chunks*near*far + disks - 1) / disks
	stride := devChunks / far * s.Chunk
	if offset {
		stride = s.Chunk
	}
	virt := func(dev, sector int64) int64 {
		setStart, setSize := dev/farSet*farSet, farSet
		if disks%farSet != 0 {
			last := (disks/farSet - 1) * farSet
			if dev >= last {
				setStart, setSize = last, farSet+disks%farSet
			}
		}
		var chunk int64
		if offset {
			chunk = sector / s.Chunk
			fc := chunk % far
			chunk /= far
			dev -= fc * near
			if dev < setStart {
				dev += setSize
			}
		} else {
			for sector >= stride {
				sector -= stride
				if dev < near+setStart {
					dev += setSize - near
				} else {
					dev -= near
				}
			}
			chunk = sector / s.Chunk
		}
		return (chunk*disks + dev) / near
	}
	rows := devChunks // offset copies: every row of the used area
	if !offset {
		rows = far * stride / s.Chunk
	}
	for dev := range out {
		for row := int64(0); row < rows && (row+1)*s.Chunk <= int64(len(out[dev])); row++ {
			if c := virt(int64(dev), row*s.Chunk); (c+1)*s.Chunk <= int64(len(data)) {
				copy(out[dev][row*s.Chunk:], data[c*s.Chunk:(c+1)*s.Chunk])
			}
		}
	}
}

// Build writes member image files under dir (member0.img, ...).
func (s Spec) Build(t testing.TB, dir string, data []byte) []string {
	t.Helper()
	parts := s.LayOut(data)
	uuid := s.uuidOf()
	var paths []string
	for i, p := range parts {
		img := make([]byte, s.lenOf(i))
		off, _ := s.dataAreaOf(i)
		copy(img[off:], p)
		switch s.Version {
		case "0.90":
			s.Super090(img, uuid, i)
		default:
			s.Super1(img, uuid, i)
		}
		path := filepath.Join(dir, fmt.Sprintf("member%d.img", i))
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// uuidOf is the array UUID of the fixture: one per array name.
func (s Spec) uuidOf() []byte {
	sum := sha256.Sum256([]byte("array " + s.Name))
	return sum[:16]
}

// BuildRaid1 writes raid1 member images (superblock 1.x) under dir
// (member0.img, ...) from the array's bytes in the file src, a piece at a
// time, leaving its zero MiBs as holes: for arrays too large to hold in
// memory three times, as Build does.
func (s Spec) BuildRaid1(t testing.TB, dir, src string) []string {
	t.Helper()
	if s.Level != Level1 || s.Version == "0.90" || s.Raw {
		t.Fatalf("mdfixture: BuildRaid1 takes raid1 with a 1.x superblock, not level %d version %s", s.Level, s.Version)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var paths []string
	buf := make([]byte, 1<<20)
	for i := 0; i < s.Members; i++ {
		path := filepath.Join(dir, fmt.Sprintf("member%d.img", i))
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
		off, size := s.dataAreaOf(i)
		if err := out.Truncate(s.lenOf(i)); err != nil {
			t.Fatal(err)
		}
		for pos := int64(0); pos < size; pos += int64(len(buf)) {
			n, err := in.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
			if n == 0 && err != nil {
				break // the array's tail past src reads as zeros
			}
			if !bytes.Equal(buf[:n], make([]byte, n)) {
				if _, err := out.WriteAt(buf[:n], off+pos); err != nil {
					t.Fatal(err)
				}
			}
		}
		sbOff, sb := s.super1Block(s.uuidOf(), i)
		if _, err := out.WriteAt(sb, sbOff); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// Super1 writes a 1.x superblock for the member in slot role into img.
func (s Spec) Super1(img, uuid []byte, role int) {
	off, b := s.super1Block(uuid, role)
	copy(img[off:], b)
}

// super1Block is the 1.x superblock of the member in slot role and its
// offset in the member.
func (s Spec) super1Block(uuid []byte, role int) (int64, []byte) {
	var sbOff int64
	switch s.Version {
	case "1.1":
		sbOff = 0
	case "1.2":
		sbOff = 4096
	case "1.0":
		sbOff = ((s.lenOf(role)/sector - 16) &^ 7) * sector
	}
	b := make([]byte, 1024)
	le := binary.LittleEndian
	le.PutUint32(b[0:], mdMagic)
	le.PutUint32(b[4:], 1)
	copy(b[16:32], uuid)
	copy(b[32:64], "fixturehost:"+s.Name)
	le.PutUint64(b[64:], 1700000000)
	le.PutUint32(b[72:], uint32(int32(s.Level)))
	le.PutUint32(b[76:], uint32(s.Layout))
	off, size := s.dataAreaOf(role)
	le.PutUint64(b[80:], uint64(s.Usable()/sector))
	le.PutUint32(b[88:], uint32(s.Chunk/sector))
	le.PutUint32(b[92:], uint32(s.Members))
	le.PutUint64(b[128:], uint64(off/sector))
	le.PutUint64(b[136:], uint64(size/sector))
	le.PutUint64(b[144:], uint64(sbOff/sector))
	le.PutUint64(b[152:], ^uint64(0)) // recovery offset: done
	le.PutUint32(b[160:], uint32(role))
	copy(b[168:184], fmt.Sprintf("device-uuid-%04d", role))
	le.PutUint64(b[192:], 1700000001)
	le.PutUint64(b[200:], 42)
	le.PutUint64(b[208:], ^uint64(0)) // resync offset: clean
	maxDev := s.Members + 2
	le.PutUint32(b[220:], uint32(maxDev))
	for i := 0; i < maxDev; i++ {
		r := uint16(0xffff)
		if i < s.Members {
			r = uint16(i)
		}
		le.PutUint16(b[256+2*i:], r)
	}
	le.PutUint32(b[216:], csum1(b[:256+2*maxDev]))
	return sbOff, b
}

// Super090 writes a 0.90 superblock for the member in slot role into img.
func (s Spec) Super090(img, uuid []byte, role int) {
	off := s.lenOf(role)&^(reserved090-1) - reserved090
	b := img[off : off+4096]
	le := binary.LittleEndian
	w := func(i int, v uint32) { le.PutUint32(b[4*i:], v) }
	be := binary.BigEndian
	w(0, mdMagic)
	w(1, 0)
	w(2, 90)
	w(4, 0)
	w(5, be.Uint32(uuid[0:]))
	w(6, 1700000000)
	w(7, uint32(int32(s.Level)))
	w(8, uint32(s.Usable()/1024))
	w(9, uint32(s.Members))
	w(10, uint32(s.Members))
	w(11, 3) // md3
	w(13, be.Uint32(uuid[4:]))
	w(14, be.Uint32(uuid[8:]))
	w(15, be.Uint32(uuid[12:]))
	w(32, 1700000001)
	w(33, 1) // clean
	w(34, uint32(s.Members))
	w(35, uint32(s.Members))
	w(39, 42) // events
	w(64, uint32(s.Layout))
	w(65, uint32(s.Chunk))
	desc := func(base, i int) {
		w(base, uint32(i))
		w(base+1, 7)
		w(base+2, uint32(i))
		w(base+3, uint32(i))
		w(base+4, 6) // active, sync
	}
	for i := 0; i < s.Members; i++ {
		desc(128+32*i, i)
	}
	desc(992, role)
	var sum uint64
	for i := 0; i < 1024; i++ {
		if i != 38 {
			sum += uint64(le.Uint32(b[4*i:]))
		}
	}
	w(38, uint32(sum&0xffffffff+sum>>32))
}

// Examine runs mdadm --examine on a member image and returns its output.
func Examine(t testing.TB, path string) string {
	t.Helper()
	out, err := exec.Command("mdadm", "--examine", path).CombinedOutput()
	if err != nil {
		t.Fatalf("mdadm --examine %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// FieldOf returns one "Key : value" field of mdadm --examine output.
func FieldOf(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " : "); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

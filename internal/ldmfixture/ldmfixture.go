// Package ldmfixture writes Windows dynamic disks (MBR, LDM database) for
// tests, from the format as the Linux kernel's ldm partition parser and
// libldm read it: PRIVHEAD at sector 6, a 1 MiB database at the end of
// each disk with TOCBLOCKs, the VMDB and one 128-byte VBLK per record.
// Tests check the result with ldmtool (libldm), an independent reader.
package ldmfixture

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const (
	sector   = 512
	dbSecs   = 2048
	dataLBA  = 2048
	vblkSize = 128
)

// Part is one stretch of a disk that belongs to a volume.
type Part struct {
	Disk      int   // index of the disk
	Start     int64 // bytes from the start of the disk's data area
	Size      int64
	VolOffset int64 // bytes into the component (spanned volumes)
	Index     int   // column (striped volumes)
}

// Component is one plex of a volume.
type Component struct {
	Striped bool
	// RAID5 is a RAID-5 component (striped with rotating parity, laid
	// out left-symmetric as libldm maps it to dm-raid's raid5_ls);
	// Stripe and the parts' Index apply as for Striped.
	RAID5  bool
	Stripe int64 // bytes
	Parts  []Part
}

// Volume is one dynamic volume.
type Volume struct {
	Name  string
	Size  int64
	Comps []Component
}

// DataStart is the byte offset of every disk's data area.
const DataStart = dataLBA * sector

// GUID returns the GUID string of disk i.
func GUID(i int) string { return fmt.Sprintf("%08x-1111-2222-3333-44444444444%d", 0xabc00000+i, i) }

// Build returns the images (all sizes[i] bytes) of the MBR dynamic disks
// of one disk group holding the volumes. The caller writes volume data at
// DataStart + Part.Start of each disk.
func Build(sizes []int64, vols []Volume) [][]byte { return build(sizes, vols, false) }

// BuildGPT is Build for GPT dynamic disks: the database lies in an LDM
// metadata partition (its last sector the PRIVHEAD), the data area in an
// LDM data partition; sgdisk writes the partition table.
func BuildGPT(t testing.TB, dir string, sizes []int64, vols []Volume) []string {
	t.Helper()
	var paths []string
	for i, img := range build(sizes, vols, true) {
		p := filepath.Join(dir, fmt.Sprintf("gpt-disk%d.img", i))
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := configStart(sizes[i], true)
		out, err := exec.Command("sgdisk", "-o", "-a", "1", "-n", fmt.Sprintf("1:%d:%d", cfg, cfg+dbSecs-1), "-t", "1:4201",
			"-n", fmt.Sprintf("2:%d:%d", dataLBA, cfg-1), "-t", "2:4200", p).CombinedOutput()
		if err != nil {
			t.Fatalf("sgdisk: %v\n%s", err, out)
		}
		paths = append(paths, p)
	}
	return paths
}

// configStart is the database's first sector: the last MiB of an MBR
// disk, before the backup GPT of a GPT one.
func configStart(size int64, gpt bool) int64 {
	if gpt {
		return size/sector - 34 - dbSecs
	}
	return size/sector - dbSecs
}

func build(sizes []int64, vols []Volume, gpt bool) [][]byte {
	var recs [][]byte
	id := uint64(1)
	next := func() uint64 { id++; return id }
	dg := next()
	recs = append(recs, record(0x35, 0, dg, "CairnDg0", vstr("9a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff"), make([]byte, 12)))
	diskIDs := make([]uint64, len(sizes))
	for i := range sizes {
		diskIDs[i] = next()
		recs = append(recs, record(0x34, 0, diskIDs[i], fmt.Sprintf("Disk%d", i+1), vstr(GUID(i)), vstr(""), make([]byte, 12)))
	}
	partNo := map[int]int{}
	for _, v := range vols {
		vid := next()
		state := make([]byte, 14)
		copy(state, "ACTIVE")
		vtype, vname := byte(3), "gen"
		if len(v.Comps) > 0 && v.Comps[0].RAID5 {
			vtype, vname = 4, "raid5"
		}
		fixed := append(state, vtype, 0, byte(vid), 0, 0, 0, 0) // type gen/raid5, unknown, number, zeros, flags
		recs = append(recs, record(0x51, 0, vid, v.Name, vstr(vname), vstr(""), fixed, vnum(uint64(len(v.Comps))),
			make([]byte, 16), vnum(uint64(v.Size/sector)), make([]byte, 4), []byte{0x07}, make([]byte, 16)))
		for ci, c := range v.Comps {
			cid := next()
			typ, flags := byte(2), byte(0)
			var extra [][]byte
			if c.Striped || c.RAID5 {
				typ, flags = 1, 0x10
				if c.RAID5 {
					typ = 3
				}
				extra = [][]byte{{0}, vnum(uint64(c.Stripe / sector)), vnum(uint64(len(c.Parts)))}
			}
			fields := [][]byte{vstr("ACTIVE"), {typ, 0, 0, 0, 0}, vnum(uint64(len(c.Parts))), make([]byte, 16), vnum(vid)}
			if !c.Striped && !c.RAID5 {
				fields = append(fields, []byte{0})
			}
			recs = append(recs, record(0x32, flags, cid, fmt.Sprintf("%s-01-%02d", v.Name, ci+1), append(fields, extra...)...))
			for _, p := range c.Parts {
				be := make([]byte, 16)
				binary.BigEndian.PutUint64(be, uint64(p.Start/sector))
				binary.BigEndian.PutUint64(be[8:], uint64(p.VolOffset/sector))
				pf := [][]byte{make([]byte, 12), be, vnum(uint64(p.Size / sector)), vnum(cid), vnum(diskIDs[p.Disk])}
				pflags := byte(0)
				if c.Striped || c.RAID5 {
					pflags = 0x08
					pf = append(pf, vnum(uint64(p.Index)))
				}
				partNo[p.Disk]++
				recs = append(recs, record(0x33, pflags, next(), fmt.Sprintf("Disk%d-%02d", p.Disk+1, partNo[p.Disk]), pf...))
			}
		}
	}
	var out [][]byte
	for i, size := range sizes {
		out = append(out, disk(size, i, recs, gpt))
	}
	return out
}

func vnum(v uint64) []byte {
	var b []byte
	for v > 0 {
		b = append([]byte{byte(v)}, b...)
		v >>= 8
	}
	if len(b) == 0 {
		b = []byte{0}
	}
	return append([]byte{byte(len(b))}, b...)
}

func vstr(s string) []byte { return append([]byte{byte(len(s))}, s...) }

// record builds a record body (from offset 0x10 of the VBLK): status,
// flags, type, size, object id, name and the type's fields.
func record(typ, flags byte, id uint64, name string, fields ...[]byte) []byte {
	body := append(vnum(id), vstr(name)...)
	for _, f := range fields {
		body = append(body, f...)
	}
	r := make([]byte, 8, 8+len(body))
	r[2], r[3] = flags, typ
	binary.BigEndian.PutUint32(r[4:], uint32(len(body)))
	return append(r, body...)
}

func disk(size int64, idx int, recs [][]byte, gpt bool) []byte {
	img := make([]byte, size)
	be := binary.BigEndian
	secs := size / sector
	cfg := configStart(size, gpt)
	// MBR: one partition of type 0x42 over the data area and database
	// (sgdisk writes the protective MBR of a GPT disk).
	if !gpt {
		img[446+4] = 0x42
		binary.LittleEndian.PutUint32(img[446+8:], 63)
		binary.LittleEndian.PutUint32(img[446+12:], uint32(secs-63))
		img[510], img[511] = 0x55, 0xAA
	}
	ph := func(at int64) {
		p := img[at*sector:]
		copy(p, "PRIVHEAD")
		be.PutUint32(p[0x08:], 0x2c3d)
		be.PutUint16(p[0x0C:], 2)
		be.PutUint16(p[0x0E:], 11)
		copy(p[0x30:], GUID(idx))
		copy(p[0x70:], "12345678-1234-1234-1234-123456789abc") // host
		copy(p[0xB0:], "9a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff") // disk group
		copy(p[0xF0:], "CairnDg0")
		be.PutUint64(p[0x11B:], dataLBA)
		be.PutUint64(p[0x123:], uint64(cfg-dataLBA))
		be.PutUint64(p[0x12B:], uint64(cfg))
		be.PutUint64(p[0x133:], dbSecs)
		be.PutUint64(p[0x13B:], 2)    // TOCs
		be.PutUint64(p[0x143:], 1)    // TOC size
		be.PutUint32(p[0x14B:], 1)    // configs
		be.PutUint32(p[0x14F:], 1)    // logs
		be.PutUint64(p[0x153:], 1840) // config size
		be.PutUint64(p[0x15B:], 224)  // log size
	}
	ph(6)
	ph(cfg + 1856)
	ph(cfg + 2047)
	toc := func(at int64) {
		t := img[(cfg+at)*sector:]
		copy(t, "TOCBLOCK")
		be.PutUint32(t[0x08:], 0x3000)
		be.PutUint64(t[0x0C:], 1)
		copy(t[0x24:], "config")
		be.PutUint64(t[0x2E:], 17)
		be.PutUint64(t[0x36:], 1840)
		copy(t[0x46:], "log")
		be.PutUint64(t[0x50:], 1857)
		be.PutUint64(t[0x58:], 224)
	}
	for _, at := range []int64{1, 2, 2045, 2046} {
		toc(at)
	}
	vm := img[(cfg+17)*sector:]
	copy(vm, "VMDB")
	slots := 4 + len(recs)
	slots = (slots + 3) / 4 * 4
	be.PutUint32(vm[0x04:], uint32(slots))
	be.PutUint32(vm[0x08:], vblkSize)
	be.PutUint32(vm[0x0C:], sector)
	be.PutUint16(vm[0x10:], 1)
	be.PutUint16(vm[0x12:], 4)
	be.PutUint16(vm[0x14:], 10)
	copy(vm[0x16:], "CairnDg0")
	copy(vm[0x35:], "9a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff")
	be.PutUint64(vm[0x75:], uint64(len(recs)+1)) // committed sequence
	be.PutUint64(vm[0x7D:], uint64(len(recs)+1)) // pending sequence
	count := map[byte]uint32{}
	for _, r := range recs {
		count[r[3]&0x0f]++
	}
	for i, typ := range []byte{1, 2, 3, 4} { // volumes, components, partitions, disks
		be.PutUint32(vm[0x85+4*i:], count[typ])
		be.PutUint32(vm[0xA1+4*i:], count[typ])
	}
	for i := 0; i < slots-4; i++ {
		v := vm[sector+i*vblkSize : sector+(i+1)*vblkSize]
		copy(v, "VBLK")
		be.PutUint32(v[0x04:], uint32(i+4))
		if i < len(recs) {
			be.PutUint32(v[0x08:], uint32(i+1))
			be.PutUint16(v[0x0C:], 0)
			be.PutUint16(v[0x0E:], 1)
			copy(v[0x10:], recs[i])
		}
	}
	return img
}

// Place writes a volume's bytes into the disk images where its parts
// lie: spanned parts by their offset in the component, striped parts
// chunk by chunk round the columns; every mirror component gets a copy.
func Place(imgs [][]byte, v Volume, data []byte) {
	for _, c := range v.Comps {
		if c.RAID5 {
			placeRAID5(imgs, v, c, data)
			continue
		}
		for _, p := range c.Parts {
			dst := imgs[p.Disk][DataStart+p.Start : DataStart+p.Start+p.Size]
			if !c.Striped {
				copy(dst, data[p.VolOffset:p.VolOffset+p.Size])
				continue
			}
			n := int64(len(c.Parts))
			for ch := int64(p.Index); ch*c.Stripe < v.Size; ch += n {
				copy(dst[(ch/n)*c.Stripe:], data[ch*c.Stripe:(ch+1)*c.Stripe])
			}
		}
	}
}

// placeRAID5 lays a RAID-5 component out left-symmetric: in row r of n
// columns the parity (XOR of the row's data chunks) is in column
// n-1-r%n, and the row's data chunks follow it round the columns.
func placeRAID5(imgs [][]byte, v Volume, c Component, data []byte) {
	n := int64(len(c.Parts))
	col := make([]Part, n)
	for _, p := range c.Parts {
		col[p.Index] = p
	}
	for r := int64(0); r*(n-1)*c.Stripe < v.Size; r++ {
		pd := n - 1 - r%n
		parity := make([]byte, c.Stripe)
		for i := int64(0); i < n-1; i++ {
			ch := r*(n-1) + i
			chunk := make([]byte, c.Stripe)
			if ch*c.Stripe < int64(len(data)) {
				copy(chunk, data[ch*c.Stripe:])
			}
			p := col[(pd+1+i)%n]
			copy(imgs[p.Disk][DataStart+p.Start+r*c.Stripe:DataStart+p.Start+p.Size], chunk)
			for x := range parity {
				parity[x] ^= chunk[x]
			}
		}
		p := col[pd]
		copy(imgs[p.Disk][DataStart+p.Start+r*c.Stripe:DataStart+p.Start+p.Size], parity)
	}
}

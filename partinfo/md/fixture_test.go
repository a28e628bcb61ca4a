package md

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// spec describes an array to lay out by hand (the md driver is not
// available here): its superblocks are written from the published format
// (md_p.h) and checked with mdadm --examine; its data are placed as
// drivers/md places them.
type spec struct {
	version   string // 0.90, 1.0, 1.1, 1.2
	level     int
	layout    int
	chunk     int64
	members   int
	memberLen int64 // bytes of each member device
	name      string
}

const dataOff1x = 1 << 20 // data offset of 1.1/1.2 members (mdadm's default is larger; any is valid)

// dataArea returns where member data lives for a version.
func (s spec) dataArea() (off, size int64) {
	switch s.version {
	case "0.90":
		return 0, s.memberLen&^(reserved090-1) - reserved090
	case "1.0":
		sb := ((s.memberLen/sector - 16) &^ 7) * sector
		return 0, sb - 4096 // leave room below the superblock
	default:
		return dataOff1x, s.memberLen - dataOff1x
	}
}

// usable is the per-member size the array uses.
func (s spec) usable() int64 {
	_, size := s.dataArea()
	if s.chunk > 0 {
		size -= size % s.chunk
	}
	return size
}

// arraySize is the size of the array built from the members.
func (s spec) arraySize() int64 {
	u := s.usable()
	n := int64(s.members)
	switch s.level {
	case Level1:
		return u
	case Level0, LevelLinear:
		return u * n
	case Level10:
		return u / s.chunk * n / int64(s.layout&0xff) * s.chunk
	case Level5, Level4:
		return u * (n - 1)
	case Level6:
		return u * (n - 2)
	}
	panic("level")
}

// layOut distributes data (the array's bytes) over member buffers as the
// md driver does, with parity.
func (s spec) layOut(data []byte) [][]byte {
	n := s.members
	u := s.usable()
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, u)
	}
	data = append(data, make([]byte, int(s.arraySize())-len(data))...)
	switch s.level {
	case Level1:
		for i := range out {
			copy(out[i], data)
		}
	case LevelLinear:
		for i := range out {
			copy(out[i], data[int64(i)*u:])
		}
	case Level0:
		for c := int64(0); c*s.chunk < int64(len(data)); c++ {
			copy(out[c%int64(n)][(c/int64(n))*s.chunk:], data[c*s.chunk:(c+1)*s.chunk])
		}
	case Level10: // near copies: copy k of chunk c in slot c*near+k
		near := int64(s.layout & 0xff)
		for c := int64(0); c*s.chunk < int64(len(data)); c++ {
			for k := int64(0); k < near; k++ {
				slot := c*near + k
				copy(out[slot%int64(n)][(slot/int64(n))*s.chunk:], data[c*s.chunk:(c+1)*s.chunk])
			}
		}
	case Level4, Level5, Level6:
		// raid5_compute_sector, written out per algorithm.
		parity := 1
		if s.level == Level6 {
			parity = 2
		}
		dd := n - parity
		rows := int64(len(data)) / s.chunk / int64(dd)
		for r := int64(0); r < rows; r++ {
			var pd, qd int
			slots := make([]int, dd)
			switch {
			case s.level == Level4:
				pd = n - 1
				for i := range slots {
					slots[i] = i
				}
			case s.level == Level5 && s.layout == algLeftSymmetric:
				pd = dd - int(r%int64(n))
				for i := range slots {
					slots[i] = (pd + 1 + i) % n
				}
			case s.level == Level5 && s.layout == algLeftAsymmetric:
				pd = dd - int(r%int64(n))
				for i := range slots {
					slots[i] = i
					if i >= pd {
						slots[i] = i + 1
					}
				}
			case s.level == Level5 && s.layout == algRightSymmetric:
				pd = int(r % int64(n))
				for i := range slots {
					slots[i] = (pd + 1 + i) % n
				}
			case s.level == Level6 && s.layout == algLeftSymmetric:
				pd = n - 1 - int(r%int64(n))
				qd = (pd + 1) % n
				for i := range slots {
					slots[i] = (pd + 2 + i) % n
				}
			default:
				panic("layout")
			}
			P := make([]byte, s.chunk)
			for i, slot := range slots {
				c := r*int64(dd) + int64(i)
				chunk := data[c*s.chunk : (c+1)*s.chunk]
				copy(out[slot][r*s.chunk:], chunk)
				for x := range P {
					P[x] ^= chunk[x]
				}
			}
			copy(out[pd][r*s.chunk:], P)
			if s.level == Level6 {
				copy(out[qd][r*s.chunk:], bytes.Repeat([]byte{0x51}, int(s.chunk))) // Q is never read by cairn
			}
		}
	}
	return out
}

// build writes the member image files under dir and returns their paths.
func (s spec) build(t *testing.T, dir string, data []byte) []string {
	t.Helper()
	parts := s.layOut(data)
	uuid := []byte("0123456789abcdef")
	var paths []string
	for i, p := range parts {
		img := make([]byte, s.memberLen)
		off, _ := s.dataArea()
		copy(img[off:], p)
		switch s.version {
		case "0.90":
			s.super090(img, uuid, i)
		default:
			s.super1(img, uuid, i)
		}
		path := filepath.Join(dir, fmt.Sprintf("member%d.img", i))
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

func (s spec) super1(img, uuid []byte, role int) {
	var sbOff int64
	switch s.version {
	case "1.1":
		sbOff = 0
	case "1.2":
		sbOff = 4096
	case "1.0":
		sbOff = ((s.memberLen/sector - 16) &^ 7) * sector
	}
	b := img[sbOff : sbOff+1024]
	le := binary.LittleEndian
	le.PutUint32(b[0:], mdMagic)
	le.PutUint32(b[4:], 1)
	copy(b[16:32], uuid)
	copy(b[32:64], "fixturehost:"+s.name)
	le.PutUint64(b[64:], 1700000000)
	le.PutUint32(b[72:], uint32(int32(s.level)))
	le.PutUint32(b[76:], uint32(s.layout))
	off, size := s.dataArea()
	le.PutUint64(b[80:], uint64(s.usable()/sector))
	le.PutUint32(b[88:], uint32(s.chunk/sector))
	le.PutUint32(b[92:], uint32(s.members))
	le.PutUint64(b[128:], uint64(off/sector))
	le.PutUint64(b[136:], uint64(size/sector))
	le.PutUint64(b[144:], uint64(sbOff/sector))
	le.PutUint64(b[152:], ^uint64(0)) // recovery offset: done
	le.PutUint32(b[160:], uint32(role))
	copy(b[168:184], fmt.Sprintf("device-uuid-%04d", role))
	le.PutUint64(b[192:], 1700000001)
	le.PutUint64(b[200:], 42)
	le.PutUint64(b[208:], ^uint64(0)) // resync offset: clean
	maxDev := s.members + 2
	le.PutUint32(b[220:], uint32(maxDev))
	for i := 0; i < maxDev; i++ {
		r := uint16(0xffff)
		if i < s.members {
			r = uint16(i)
		}
		le.PutUint16(b[256+2*i:], r)
	}
	le.PutUint32(b[216:], csum1(b[:256+2*maxDev]))
}

func (s spec) super090(img, uuid []byte, role int) {
	off := s.memberLen&^(reserved090-1) - reserved090
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
	w(7, uint32(int32(s.level)))
	w(8, uint32(s.usable()/1024))
	w(9, uint32(s.members))
	w(10, uint32(s.members))
	w(11, 3) // md3
	w(13, be.Uint32(uuid[4:]))
	w(14, be.Uint32(uuid[8:]))
	w(15, be.Uint32(uuid[12:]))
	w(32, 1700000001)
	w(33, 1) // clean
	w(34, uint32(s.members))
	w(35, uint32(s.members))
	w(39, 42) // events
	w(64, uint32(s.layout))
	w(65, uint32(s.chunk))
	desc := func(base, i int) {
		w(base, uint32(i))
		w(base+1, 7)
		w(base+2, uint32(i))
		w(base+3, uint32(i))
		w(base+4, 6) // active, sync
	}
	for i := 0; i < s.members; i++ {
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

// examine runs mdadm --examine on a member image and returns its output.
func examine(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("mdadm", "--examine", path).CombinedOutput()
	if err != nil {
		t.Fatalf("mdadm --examine %s: %v\n%s", path, err, out)
	}
	return string(out)
}

func fieldOf(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " : "); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

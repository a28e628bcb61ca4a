package ldm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairnbackup/cairn/internal/ldmfixture"
	"github.com/cairnbackup/cairn/partinfo"
)

// TestRAID5 lays out a RAID-5 volume over three and over four dynamic
// disks (left-symmetric parity, as libldm maps it), checks the database
// with ldmtool, and reads the volume whole, with each disk missing in
// turn (rebuilt from parity), and refuses two missing disks.
func TestRAID5(t *testing.T) {
	for _, disks := range []int{3, 4} {
		t.Run(string(rune('0'+disks))+"disks", func(t *testing.T) {
			var parts []ldmfixture.Part
			for i := range disks {
				parts = append(parts, ldmfixture.Part{Disk: i, Start: mib, Size: 8 * mib, Index: (i + 1) % disks})
			}
			v := ldmfixture.Volume{Name: "Parity", Size: int64(disks-1) * 8 * mib,
				Comps: []ldmfixture.Component{{RAID5: true, Stripe: 64 << 10, Parts: parts}}}
			sizes := make([]int64, disks)
			for i := range sizes {
				sizes[i] = 32 * mib
			}
			imgs := ldmfixture.Build(sizes, []ldmfixture.Volume{v})
			data := make([]byte, v.Size)
			rng := rand.New(rand.NewPCG(uint64(disks), 5))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			ldmfixture.Place(imgs, v, data)
			set, err := Scan(context.Background(), regions(imgs, -1))
			if err != nil {
				t.Fatal(err)
			}
			if ldmtool := ldmtoolFor(t, imgs); ldmtool != nil {
				crossCheck(t, set, ldmtool)
			}
			if len(set.Volumes) != 1 || set.Volumes[0].Type != "raid5" {
				t.Fatalf("volumes %+v", set.Volumes)
			}
			readAll := func(set *Set) ([]byte, error) {
				r, err := set.Volumes[0].Open()
				if err != nil {
					return nil, err
				}
				got := make([]byte, v.Size)
				for off := 0; off < len(got); off += 100000 {
					if _, err := r.ReadAt(got[off:min(off+100000, len(got))], int64(off)); err != nil && off+100000 < len(got) {
						return nil, err
					}
				}
				return got, nil
			}
			if got, err := readAll(set); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("complete: %v, equal %v", err, bytes.Equal(got, data))
			}
			for skip := range disks {
				set, err := Scan(context.Background(), regions(imgs, skip))
				if err != nil {
					t.Fatal(err)
				}
				if got, err := readAll(set); err != nil || !bytes.Equal(got, data) {
					t.Errorf("disk %d missing: %v, equal %v", skip, err, bytes.Equal(got, data))
				}
			}
			set, err = Scan(context.Background(), regions(imgs[:disks-2], -1))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := readAll(set); !errors.Is(err, ErrMissing) {
				t.Errorf("two disks missing: %v, want ErrMissing", err)
			}
		})
	}
}

// FuzzRAID5Reader opens RAID-5 components of any stripe, column count,
// partition indexes, sizes and missing disks, and reads the volume the
// partitions can hold: every read fills the buffer or fails, never
// panics or reads outside a partition.
func FuzzRAID5Reader(f *testing.F) {
	f.Add(uint8(7), uint8(3), []byte{0, 1, 2}, []byte{8, 8, 8}, uint8(255))
	f.Add(uint8(4), uint8(4), []byte{1, 0, 3, 2}, []byte{4, 4, 4, 4}, uint8(1))
	f.Add(uint8(9), uint8(0), []byte{0, 1, 2}, []byte{3, 5, 4}, uint8(0))
	f.Fuzz(func(t *testing.T, stripeLog, columns uint8, idx, sizes []byte, missing uint8) {
		if len(idx) == 0 || len(idx) > 8 || len(sizes) < len(idx) {
			return
		}
		stripe := int64(512) << (stripeLog % 10)
		pl := &plex{typ: compRAID5, stripe: stripe, columns: int(columns)}
		smallest := int64(-1)
		for i := range idx {
			size := int64(sizes[i]%16) * 16 << 10
			disk := &Disk{Region: partinfo.Region{Name: "d", R: bytes.NewReader(make([]byte, size)), Size: size}}
			if i == int(missing) {
				disk = nil
			}
			pl.parts = append(pl.parts, &part{name: fmt.Sprint(i), size: size, index: int(idx[i]), disk: disk})
			if smallest < 0 || size < smallest {
				smallest = size
			}
		}
		read, err := pl.reader()
		if err != nil {
			return
		}
		n := int64(len(idx))
		vol := smallest / stripe * stripe * (n - 1)
		buf := make([]byte, vol)
		if err := read(buf, 0); err != nil && vol > 0 {
			t.Fatalf("read of %d bytes: %v", vol, err)
		}
	})
}

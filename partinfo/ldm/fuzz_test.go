package ldm

import (
	"bytes"
	"context"
	"testing"

	"github.com/cairnbackup/cairn/internal/ldmfixture"
)

// FuzzDatabase mutates the VMDB and VBLK sectors of a dynamic disk's
// database (and its PRIVHEAD) and reads every volume that assembles:
// errors are fine, panics and short reads without an error are not.
func FuzzDatabase(f *testing.F) {
	imgs := ldmfixture.Build([]int64{8 * mib, 8 * mib}, []ldmfixture.Volume{
		{Name: "Spanned", Size: 2 * mib, Comps: []ldmfixture.Component{{Parts: []ldmfixture.Part{
			{Disk: 0, Start: 0, Size: mib}, {Disk: 1, Start: 0, Size: mib, VolOffset: mib}}}}},
		{Name: "Striped", Size: 2 * mib, Comps: []ldmfixture.Component{{Striped: true, Stripe: 64 << 10, Parts: []ldmfixture.Part{
			{Disk: 0, Start: mib, Size: mib, Index: 0}, {Disk: 1, Start: mib, Size: mib, Index: 1}}}}},
	})
	cfg := int64(len(imgs[0])) - 2048*sector
	vmdb := cfg + offVMDB*sector
	// The VMDB header, the first VBLK sector and the PRIVHEAD's area fields.
	f.Add(imgs[0][vmdb:vmdb+0xB1], imgs[0][vmdb+sector:vmdb+2*sector], imgs[0][offPriv1*sector+0x11B:offPriv1*sector+0x13B])
	f.Fuzz(func(t *testing.T, head, vblks, areas []byte) {
		d0 := bytes.Clone(imgs[0])
		copy(d0[vmdb:vmdb+0xB1], head)
		copy(d0[vmdb+sector:vmdb+2*sector], vblks)
		copy(d0[offPriv1*sector+0x11B:offPriv1*sector+0x13B], areas)
		set, err := Scan(context.Background(), regions([][]byte{d0, imgs[1]}, -1))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range set.Volumes {
			r, err := v.Open()
			if err != nil {
				continue
			}
			buf := make([]byte, min(r.Size(), 4<<20))
			n, err := r.ReadAt(buf, 0)
			if err == nil && n != len(buf) {
				t.Fatalf("%s: short read %d without an error", v.Name, n)
			}
		}
	})
}

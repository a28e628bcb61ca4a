package lvm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo/lvm"
)

// TestLVMParityLayouts reads raid4 and raid6 (zr, nr, nc, and the plain
// "raid6" alias) LVs that lvm2 accepted through vgcfgrestore, with their
// images laid out as dm-raid does (raid4: md raid5 with parity first;
// raid6: md's DDF rotating layouts), each image on its own PV: every byte
// equals the data written, with all PVs and with any one missing (rebuilt
// from P); with two missing the LV is refused, never read as wrong bytes.
// (lvm2 refuses raid6 LVs of fewer than five images.)
func TestLVMParityLayouts(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, lvmfixture.Required...)
	for _, c := range []struct {
		seg    string
		images int
	}{{"raid4", 3}, {"raid4", 4}, {"raid6", 5}, {"raid6_zr", 5}, {"raid6_nr", 5}, {"raid6_nc", 5}, {"raid6_nc", 6}} {
		t.Run(fmt.Sprintf("%s-%d", c.seg, c.images), func(t *testing.T) {
			parity := 1
			if c.seg != "raid4" {
				parity = 2
			}
			data := make([]byte, int64(c.images-parity)*lvmfixture.ParityImageSize)
			rng := rand.New(rand.NewPCG(uint64(c.images), 7))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			disks, size := lvmfixture.Parity(t, t.TempDir(), "vgp", c.seg, c.images, data)
			if size != int64(len(data)) {
				t.Fatalf("LV of %d bytes, data %d", size, len(data))
			}
			read := func(without ...int) ([]byte, error) {
				var keep []string
				for i, d := range disks {
					skip := false
					for _, w := range without {
						skip = skip || w == i
					}
					if !skip {
						keep = append(keep, d)
					}
				}
				set, err := lvm.Scan(context.Background(), devices(t, keep))
				if err != nil {
					return nil, err
				}
				vg := set.VG("vgp")
				if vg == nil || vg.LV("lv") == nil {
					return nil, fmt.Errorf("no VG vgp with LV lv")
				}
				vol, err := vg.LV("lv").Open()
				if err != nil {
					return nil, err
				}
				got := make([]byte, vol.Size())
				if _, err := vol.ReadAt(got, 0); err != nil {
					return nil, err
				}
				return got, nil
			}
			check := func(name string, without ...int) {
				got, err := read(without...)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				if !bytes.Equal(got, data) {
					off := 0
					for off < len(got) && off < len(data) && got[off] == data[off] {
						off++
					}
					t.Errorf("%s: differs at byte %d (chunk %d); sizes %d/%d", name, off, off/(64<<10), len(got), len(data))
				}
			}
			check("complete")
			for k := range c.images {
				check(fmt.Sprintf("without image %d", k), k)
			}
			if _, err := read(0, 1); !errors.Is(err, lvm.ErrMissingPV) && (err == nil || !bytes.Contains([]byte(err.Error()), []byte("missing"))) {
				t.Errorf("two images missing: %v, want a missing-PV error", err)
			}
		})
	}
}

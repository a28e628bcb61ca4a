package ldm

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/ldmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
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
			if _, err := exec.LookPath("ldmtool"); err == nil || testutil.InCI() {
				testutil.RequireTools(t, "ldmtool")
				dir := t.TempDir()
				var args []string
				for i, b := range imgs {
					p := filepath.Join(dir, "disk"+string(rune('0'+i))+".img")
					os.WriteFile(p, b, 0o644)
					args = append(args, "-d", p)
				}
				crossCheck(t, set, func(a ...string) []byte {
					out, err := exec.Command("ldmtool", append(args, a...)...).Output()
					if err != nil {
						t.Fatalf("ldmtool %v: %v", a, err)
					}
					return out
				})
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

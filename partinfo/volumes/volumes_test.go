package volumes_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

const mib = 1 << 20

// mbrDisk is a 32 MiB MBR disk: p1 ext4 at 1 MiB, an extended p2 holding
// one logical partition p5 (type 8e) at 16 MiB + 1 MiB.
func mbrDisk(t *testing.T) string {
	img := filepath.Join(t.TempDir(), "mbr.img")
	fixture.Image(t, img, 32*mib)
	fixture.RunInput(t, "label: dos\nstart=2048, size=16384, type=83\nstart=32768, size=32768, type=5\nstart=34816, size=16384, type=8e\n", "sfdisk", img)
	fixture.Run(t, nil, "mkfs.ext4", "-q", "-F", "-E", "offset=1048576", img, "8M")
	return img
}

// wholeDisk is an 8 MiB ext4 filesystem without a partition table.
func wholeDisk(t *testing.T) string {
	img := filepath.Join(t.TempDir(), "whole.img")
	fixture.Image(t, img, 8*mib)
	fixture.Run(t, nil, "mkfs.ext4", "-q", "-F", img)
	return img
}

// brokenGPT has a protective MBR but neither GPT header is valid.
func brokenGPT(t *testing.T) string {
	img := filepath.Join(t.TempDir(), "gpt.img")
	fixture.Image(t, img, 8*mib)
	fixture.RunInput(t, "label: gpt\nstart=2048, size=4096\n", "sfdisk", img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := []byte("EFI PART but not a header")
	for _, off := range []int64{512, 8*mib - 512} {
		if _, err := f.WriteAt(junk, off+8); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func open(t *testing.T, img string) *os.File {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func size(t *testing.T, f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestOfDisk(t *testing.T) {
	testutil.RequireTools(t, "sfdisk", "mkfs.ext4")
	type want struct {
		name, typ string
		off       int64
		part      int // partition number; 0: none
	}
	for _, c := range []struct {
		name  string
		image func(*testing.T) string
		table partinfo.TableType
		want  []want
		err   error
	}{
		{"mbr with a logical partition", mbrDisk, partinfo.TableMBR,
			[]want{{"p1", "ext4", 1 * mib, 1}, {"p5", partinfo.TypeUnknown, 17 * mib, 5}}, nil},
		{"no table", wholeDisk, partinfo.TableNone, []want{{"whole", "ext4", 0, 0}}, nil},
		{"corrupt gpt", brokenGPT, "", nil, partinfo.ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := open(t, c.image(t))
			vols, tab, err := volumes.OfDisk(f, size(t, f))
			if c.err != nil {
				if !errors.Is(err, c.err) || vols != nil {
					t.Fatalf("OfDisk = %v, %v; want %v", vols, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tab.Type != c.table {
				t.Errorf("table %q, want %q", tab.Type, c.table)
			}
			if len(vols) != len(c.want) {
				t.Fatalf("volumes %+v, want %+v", vols, c.want)
			}
			for i, w := range c.want {
				v := vols[i]
				num := 0
				if v.Partition != nil {
					num = v.Partition.Number
				}
				if v.Name != w.name || v.Detection.Type != w.typ || v.Offset != w.off || num != w.part {
					t.Errorf("volume %d: %s %s at %d (partition %d), want %+v", i, v.Name, v.Detection.Type, v.Offset, num, w)
				}
			}
		})
	}
}

// TestScan assembles across three disks: an LVM PV on a logical
// partition is found, a disk whose table is corrupt is named in the
// problems, and nothing is invented (no MD array, no dynamic volume).
func TestScan(t *testing.T) {
	testutil.RequireTools(t, "sfdisk", "mkfs.ext4", "pvcreate", "losetup")
	testutil.RequireRoot(t)
	mbr := mbrDisk(t)
	out, err := exec.Command("losetup", "-f", "--show", "-o", "17825792", "--sizelimit", "8388608", mbr).CombinedOutput()
	if err != nil {
		testutil.Missing(t, fmt.Sprintf("a loop device: %v %s", err, out))
	}
	dev := strings.TrimSpace(string(out))
	fixture.Run(t, nil, "pvcreate", "-ff", "-y", "--norestorefile", "--uuid", "abcdef123456789abcdef01234567890", dev)
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d %s: %v %s", dev, err, out)
	}
	var disks []volumes.Disk
	for name, img := range map[string]string{"a": mbr, "b": wholeDisk(t), "c": brokenGPT(t)} {
		f := open(t, img)
		disks = append(disks, volumes.Disk{Name: name, R: f, Size: size(t, f)})
	}
	st, err := volumes.Scan(context.Background(), disks)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.LVM.PVs) != 1 || st.LVM.PVs[0].Device.Name != "a/p5" || st.LVM.PVs[0].VG != "" {
		t.Errorf("PVs %+v, want one (no VG) on a/p5", st.LVM.PVs)
	}
	var named bool
	for _, p := range st.LVM.Problems {
		named = named || strings.HasPrefix(p, "disk c: read partition table")
	}
	if !named {
		t.Errorf("problems %q do not name disk c", st.LVM.Problems)
	}
	if len(st.MD.Arrays) != 0 || len(st.Arrays) != 0 || len(st.LDM.Volumes) != 0 || len(st.LVM.VGs) != 0 {
		t.Errorf("invented volumes: md %v, ldm %v, vgs %v", st.MD.Arrays, st.LDM.Volumes, st.LVM.VGs)
	}
}

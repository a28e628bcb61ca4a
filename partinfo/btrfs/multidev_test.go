package btrfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// multiDev makes a btrfs of several devices with mkfs.btrfs on loop
// devices (data and metadata profiles as given), fills it through a
// kernel mount (a tree of small files, a 40 MiB file that crosses many
// stripes, a sparse file) and leaves it mounted read-only at the
// returned directory; the device images are returned in devid order.
func multiDev(t *testing.T, devices int, data, meta string) ([]string, string) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "losetup", "mount", "umount")
	dir := t.TempDir()
	var imgs, loops []string
	var pinned []*testutil.Loop
	for i := range devices {
		img := filepath.Join(dir, fmt.Sprintf("dev%d.img", i))
		fixture.Image(t, img, 256<<20)
		// Detached once, through its pin: detaching the name again at
		// the end took away loop devices other packages had been given
		// since (an LVM fixture's PV, mid-build).
		l := testutil.AttachLoop(t, img, testutil.LoopOptions{})
		imgs, loops, pinned = append(imgs, img), append(loops, l.Dev), append(pinned, l)
	}
	sh(t, "mkfs.btrfs", append([]string{"-q", "-f", "-L", "multi-" + data, "-d", data, "-m", meta}, loops...)...)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	var opts []string
	for _, l := range loops[1:] {
		opts = append(opts, "device="+l)
	}
	mount := func(ro string) {
		sh(t, "mount", "-o", strings.Join(append([]string{ro}, opts...), ","), loops[0], mnt)
	}
	mount("rw")
	fixture.Tree(t, filepath.Join(mnt, "tree"), fixture.Spec{ManyFiles: 60, Depth: 3, BigFile: 1 << 20, Seed: 9})
	big := make([]byte, 40<<20)
	rng := rand.New(rand.NewPCG(uint64(devices), 7))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	os.WriteFile(filepath.Join(mnt, "big.bin"), big, 0o644)
	sp, _ := os.Create(filepath.Join(mnt, "sparse.bin"))
	sp.WriteAt([]byte("end"), 30<<20)
	sp.Close()
	sh(t, "umount", mnt)
	for _, l := range pinned {
		if err := l.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	// Read-only, through fresh loop devices, for the comparison.
	loops = loops[:0]
	opts = opts[:0]
	for _, img := range imgs {
		loops = append(loops, testutil.AttachLoop(t, img, testutil.LoopOptions{ReadOnly: true}).Dev)
	}
	for _, l := range loops[1:] {
		opts = append(opts, "device="+l)
	}
	mount("ro")
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return imgs, mnt
}

func regionsOf(t *testing.T, imgs []string, skip int) []partinfo.Region {
	var rs []partinfo.Region
	for i, img := range imgs {
		if i == skip {
			continue
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, partinfo.Region{Name: filepath.Base(img), R: bytes.NewReader(b), Size: int64(len(b))})
	}
	return rs
}

// TestBtrfsMultiDevice reads btrfs filesystems of two to four devices
// made by mkfs.btrfs (data raid0, raid1, single, raid10; metadata raid1,
// raid10, dup) and compares every file with the kernel's mount of the
// same devices; mirrored ones also with one device missing. A device
// opened alone says it is one of several; a RAID5 filesystem is refused.
func TestBtrfsMultiDevice(t *testing.T) {
	cases := []struct {
		devices    int
		data, meta string
		mirrored   bool // every chunk readable with one device missing
	}{
		{2, "raid0", "raid1", false},
		{2, "raid1", "raid1", true},
		{3, "single", "raid1", false},
		{4, "raid10", "raid10", true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%s-%d", c.data, c.meta, c.devices), func(t *testing.T) {
			imgs, mnt := multiDev(t, c.devices, c.data, c.meta)
			// Devices in reverse order: each is found by its devid.
			rs := regionsOf(t, imgs, -1)
			for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
				rs[i], rs[j] = rs[j], rs[i]
			}
			groups := Scan(append(rs, rs[0]))
			if len(groups) != 1 || len(groups[0].Members) != c.devices || groups[0].Missing() != 0 || groups[0].Label != "multi-"+c.data {
				t.Fatalf("Scan: %+v", groups)
			}
			f, err := groups[0].Open()
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := compareTree(t, f, mnt); n < 60 {
				t.Errorf("only %d paths compared", n)
			}
			if _, err := Open(rs[0].R, 0, rs[0].Size); !errors.Is(err, ErrMultiDevice) {
				t.Errorf("one device opened alone: %v, want ErrMultiDevice", err)
			}
			// One device missing.
			f, err = OpenDevices(regionsOf(t, imgs, 1))
			if err != nil {
				if c.mirrored {
					t.Fatalf("one device missing: %v", err)
				}
				if !errors.Is(err, ErrMissingDevice) {
					t.Errorf("one device missing: %v, want ErrMissingDevice", err)
				}
				return
			}
			// Every file reads as the kernel's or fails naming the
			// missing device, never with other bytes.
			missing := 0
			filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				rel, _ := filepath.Rel(mnt, p)
				want, _ := os.ReadFile(p)
				got := make([]byte, len(want))
				ino, err := lookupPath(f, rel)
				if err == nil {
					_, err = f.ReadAt(ino, got, 0)
				}
				switch {
				case errors.Is(err, ErrMissingDevice):
					missing++
				case err != nil && len(want) > 0:
					t.Errorf("%s with a device missing: %v", rel, err)
				case !bytes.Equal(got, want):
					t.Errorf("%s with a device missing: other bytes", rel)
				}
				return nil
			})
			if c.mirrored && missing > 0 {
				t.Errorf("mirrored: %d files unreadable with one device missing", missing)
			}
			if c.data == "raid0" && missing == 0 {
				t.Errorf("raid0 with a device missing: every file read")
			}
		})
	}
}

// TestBtrfsRaid56Refused: a filesystem whose data is RAID5 opens with an
// error wrapping ErrUnsupported that names the profile, not wrong bytes.
func TestBtrfsRaid56Refused(t *testing.T) {
	testutil.RequireTools(t, "mkfs.btrfs")
	dir := t.TempDir()
	var imgs []string
	for i := range 3 {
		img := filepath.Join(dir, fmt.Sprintf("dev%d.img", i))
		fixture.Image(t, img, 256<<20)
		imgs = append(imgs, img)
	}
	sh(t, "mkfs.btrfs", append([]string{"-q", "-f", "-d", "raid5", "-m", "raid1"}, imgs...)...)
	_, err := OpenDevices(regionsOf(t, imgs, -1))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "RAID5/6") {
		t.Errorf("RAID5 data: %v, want ErrUnsupported naming RAID5/6", err)
	}
}

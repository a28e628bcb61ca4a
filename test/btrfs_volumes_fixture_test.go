package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/mdfixture"
)

// loopDevice attaches img[off:off+size] (size 0: to its end) to a loop
// device, read-only when ro; it is detached when the test ends, or
// earlier by the returned function.
func loopDevice(t testing.TB, img string, off, size int64, ro bool) (dev string, detach func()) {
	t.Helper()
	args := []string{"-f", "--show", "-o", fmt.Sprint(off)}
	if size > 0 {
		args = append(args, "--sizelimit", fmt.Sprint(size))
	}
	if ro {
		args = append(args, "-r")
	}
	out, err := exec.Command("losetup", append(args, img)...).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v %s", img, err, out)
	}
	dev = strings.TrimSpace(string(out))
	attached := true
	detach = func() {
		if attached {
			attached = false
			exec.Command("losetup", "-d", dev).Run()
		}
	}
	t.Cleanup(detach)
	return dev, detach
}

// kernelMount mounts dev at dir (made if missing) with the mount options
// given (ro, device=..., compress=...); it is unmounted when the test
// ends, or earlier by the returned function (which fails the test if the
// unmount fails).
func kernelMount(t testing.TB, dev, dir, opts string) (umount func()) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	sh(t, "mount", "-o", opts, dev, dir)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", dir).Run()
		}
	})
	return func() {
		t.Helper()
		if mounted {
			sh(t, "umount", dir)
			mounted = false
		}
	}
}

// mkfsBtrfsOn makes a btrfs with label over the byte ranges given (one
// device each: image file, offset, size), fills it through a kernel
// mount with fill(dir) and unmounts it; extra goes to mkfs.btrfs
// (profiles).
func mkfsBtrfsOn(t testing.TB, dir, label string, devs []byteRange, extra []string, fill func(mnt string)) {
	t.Helper()
	var loops []string
	var detach []func()
	for _, d := range devs {
		l, det := loopDevice(t, d.img, d.off, d.size, false)
		loops, detach = append(loops, l), append(detach, det)
	}
	sh(t, "mkfs.btrfs", append(append([]string{"-q", "-f", "-L", label}, extra...), loops...)...)
	opts := "rw"
	for _, l := range loops[1:] {
		opts += ",device=" + l
	}
	umount := kernelMount(t, loops[0], filepath.Join(dir, "fill-"+label), opts)
	fill(filepath.Join(dir, "fill-"+label))
	umount()
	for _, d := range detach {
		d()
	}
}

// byteRange is size bytes at offset off of the file img.
type byteRange struct {
	img       string
	off, size int64
}

// mountBtrfsRanges mounts the btrfs on the byte ranges given (devices in
// any order) read-only at dir through fresh loop devices: the kernel's
// view of the same bytes cairn reads.
func mountBtrfsRanges(t testing.TB, dir string, devs ...byteRange) {
	t.Helper()
	var loops []string
	for _, d := range devs {
		l, _ := loopDevice(t, d.img, d.off, d.size, true)
		loops = append(loops, l)
	}
	opts := "ro"
	for _, l := range loops[1:] {
		opts += ",device=" + l
	}
	kernelMount(t, loops[0], dir, opts)
}

// nasFixture is a NAS-style VM of two GPT disks (sda, sdb), every
// filesystem btrfs on a volume: partition 1 of each disk a member of MD
// raid1 "nas" holding the btrfs "nasroot"; partition 2 of each a member
// of MD raid1 "vault", the LVM physical volume of VG "nasvg" with the
// LVs "vol1" (the btrfs "vol1") and "pool0"; partition 3 of each a member
// of MD raid1 "poolmd". LV nasvg/pool0 (devid 1) and array poolmd (devid
// 2) are the two devices of the btrfs "pool" (data raid0, metadata
// raid1). Superblocks 1.2 (data 1 MiB into each member).
type nasFixture struct {
	disks []string // sda, sdb images
	// Where each btrfs lies in sda.img (the same bytes on sdb), for a
	// kernel mount of what cairn reads.
	nasroot, vol1, pool0, pool1 byteRange
	poolBig                     []byte // pool's big.bin, striped over both devices
}

// Sizes of the NAS fixture (mkfs.btrfs wants 109 MiB a device at least,
// 125 MiB for raid0/raid1 profiles).
const (
	nasMember   = 118 * mib
	vaultMember = 248 * mib
	poolMember  = 130 * mib
	nasDiskSize = (1 + 118 + 248 + 130 + 1) * mib
	vol1Size    = 112 * mib
	pool0Size   = 128 * mib
)

// buildNAS makes the NAS-style disks under dir. The md driver is not
// available here: each array's bytes are a file, filled through loop
// devices (lvm2 on vault's, mkfs.btrfs and a kernel mount on nas's,
// vol1's, pool0's and poolmd's), then written into member images by
// internal/mdfixture (superblocks checked with mdadm --examine).
func buildNAS(t *testing.T, dir string) nasFixture {
	t.Helper()
	nas := mdfixture.Spec{Version: "1.2", Level: mdfixture.Level1, Members: 2, MemberLen: nasMember, Name: "nas"}
	vault := mdfixture.Spec{Version: "1.2", Level: mdfixture.Level1, Members: 2, MemberLen: vaultMember, Name: "vault"}
	pool := mdfixture.Spec{Version: "1.2", Level: mdfixture.Level1, Members: 2, MemberLen: poolMember, Name: "poolmd"}
	arrays := map[string]string{}
	for _, s := range []mdfixture.Spec{nas, vault, pool} {
		arrays[s.Name] = filepath.Join(dir, s.Name+".array")
		makeImage(t, arrays[s.Name], s.ArraySize())
	}
	offs := lvmfixture.Simple(t, dir, arrays["vault"], "nasvg", []string{"vol1", "pool0"}, []int{vol1Size / mib, pool0Size / mib})

	mkfsBtrfsOn(t, dir, "nasroot", []byteRange{{arrays["nas"], 0, nas.ArraySize()}}, nil, func(mnt string) {
		makeGuestTree(t, filepath.Join(mnt, "root"), treeSpec{files: 200, bigDir: 150, depth: 6, bigFile: 4 * mib, links: true, modes: true, longNames: true, sparse: true}, 51)
		sh(t, "btrfs", "subvolume", "create", filepath.Join(mnt, "@home"))
		makeGuestTree(t, filepath.Join(mnt, "@home", "user"), treeSpec{files: 40, depth: 3, bigFile: mib, modes: true}, 52)
	})
	mkfsBtrfsOn(t, dir, "vol1", []byteRange{{arrays["vault"], offs["vol1"], vol1Size}}, nil, func(mnt string) {
		makeGuestTree(t, filepath.Join(mnt, "share"), treeSpec{files: 150, bigDir: 100, depth: 4, bigFile: 6 * mib, links: true, modes: true, sparse: true}, 53)
	})
	f := nasFixture{poolBig: []byte(strings.Repeat("striped over an LV and an MD array in 64 KiB units\n", 200000))}
	mkfsBtrfsOn(t, dir, "pool", []byteRange{{arrays["vault"], offs["pool0"], pool0Size}, {arrays["poolmd"], 0, pool.ArraySize()}},
		[]string{"-d", "raid0", "-m", "raid1"}, func(mnt string) {
			makeGuestTree(t, filepath.Join(mnt, "media"), treeSpec{files: 100, depth: 3, bigFile: 3 * mib, links: true, modes: true}, 54)
			if err := os.WriteFile(filepath.Join(mnt, "big.bin"), f.poolBig, 0o644); err != nil {
				t.Fatal(err)
			}
		})

	members := map[string][]string{}
	for _, s := range []mdfixture.Spec{nas, vault, pool} {
		d := filepath.Join(dir, s.Name+"-members")
		os.Mkdir(d, 0o755)
		members[s.Name] = s.BuildRaid1(t, d, arrays[s.Name])
		os.Remove(arrays[s.Name])
		if out := mdfixture.Examine(t, members[s.Name][0]); !strings.Contains(mdfixture.FieldOf(out, "Checksum"), "correct") {
			t.Fatalf("mdadm --examine %s:\n%s", members[s.Name][0], out)
		}
	}
	p1, p2, p3 := int64(1*mib), int64(1+118)*mib, int64(1+118+248)*mib
	for i, name := range []string{"sda", "sdb"} {
		d := filepath.Join(dir, name+".img")
		makeImage(t, d, nasDiskSize)
		sh(t, "sgdisk", "-n", "1:2048:+118M", "-t", "1:fd00", "-n", "2:0:+248M", "-t", "2:fd00", "-n", "3:0:+130M", "-t", "3:fd00", d)
		writeAt(t, d, members["nas"][i], p1)
		writeAt(t, d, members["vault"][i], p2)
		writeAt(t, d, members["poolmd"][i], p3)
		f.disks = append(f.disks, d)
	}
	sda := f.disks[0]
	f.nasroot = byteRange{sda, p1 + mdfixture.DataOff1x, nas.ArraySize()}
	f.vol1 = byteRange{sda, p2 + mdfixture.DataOff1x + offs["vol1"], vol1Size}
	f.pool0 = byteRange{sda, p2 + mdfixture.DataOff1x + offs["pool0"], pool0Size}
	f.pool1 = byteRange{sda, p3 + mdfixture.DataOff1x, pool.ArraySize()}
	return f
}

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/ldmfixture"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/mdfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// centosFixture is a CentOS-style VM of two disks (sda, sdb; 142 MiB
// each): partition 1 of each is a member of MD raid1 "boot" (superblock
// 1.0, ext4 /boot from srcBoot), partition 2 a member of MD raid1 "pv"
// (superblock 1.2), the LVM physical volume of VG "centos" with LVs root
// (ext4 from srcRoot) and swap.
type centosFixture struct {
	disks            []string // sda, sdb images
	srcBoot, srcRoot string
}

const centosDiskSize = 142 * mib

// buildCentOS makes the CentOS-style disks under dir. The md driver is
// not available here, so the members are laid out by internal/mdfixture
// (superblocks checked with mdadm --examine); the VG is made by lvm2 on
// the array's bytes.
func buildCentOS(t *testing.T, dir string) centosFixture {
	t.Helper()
	bootSpec := mdfixture.Spec{Version: "1.0", Level: mdfixture.Level1, Members: 2, MemberLen: 40 * mib, Name: "boot"}
	pvSpec := mdfixture.Spec{Version: "1.2", Level: mdfixture.Level1, Members: 2, MemberLen: 100 * mib, Name: "pv"}

	f := centosFixture{srcBoot: filepath.Join(dir, "src-boot"), srcRoot: filepath.Join(dir, "src-root")}
	makeGuestTree(t, f.srcBoot, treeSpec{files: 60, bigDir: 20, depth: 3, bigFile: 3 * mib, modes: true}, 31)
	makeGuestTree(t, f.srcRoot, treeSpec{files: 300, bigDir: 200, depth: 8, bigFile: 8 * mib, links: true, modes: true, longNames: true}, 32)
	bootImg := filepath.Join(dir, "boot.ext4")
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "boot", "-d", f.srcBoot, bootImg, fmt.Sprintf("%dK", bootSpec.ArraySize()/1024))
	pvImg := filepath.Join(dir, "pv.img")
	makeImage(t, pvImg, pvSpec.ArraySize())
	offs := lvmfixture.Simple(t, dir, pvImg, "centos", []string{"root", "swap"}, []int{60, 8})
	rootImg := filepath.Join(dir, "root.ext4")
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", f.srcRoot, rootImg, "60M")
	writeAt(t, pvImg, rootImg, offs["root"])

	bootMembers := raid1Members(t, dir, bootSpec, bootImg)
	pvMembers := raid1Members(t, dir, pvSpec, pvImg)
	for i, name := range []string{"sda", "sdb"} {
		d := filepath.Join(dir, name+".img")
		makeImage(t, d, centosDiskSize)
		sh(t, "sgdisk", "-n", "1:2048:+40M", "-t", "1:fd00", "-n", "2:0:+100M", "-t", "2:fd00", d)
		writeAt(t, d, bootMembers[i], 1*mib)
		writeAt(t, d, pvMembers[i], 41*mib)
		f.disks = append(f.disks, d)
	}
	return f
}

// raid1Members writes the members of the raid1 s (superblock 1.x) whose
// array bytes are the file src under dir/<name>-members and checks their
// superblocks with mdadm --examine.
func raid1Members(t *testing.T, dir string, s mdfixture.Spec, src string) []string {
	t.Helper()
	d := filepath.Join(dir, s.Name+"-members")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	members := s.BuildRaid1(t, d, src)
	for _, m := range members {
		if out := mdfixture.Examine(t, m); !strings.Contains(mdfixture.FieldOf(out, "Checksum"), "correct") {
			t.Fatalf("mdadm --examine %s:\n%s", m, out)
		}
	}
	return members
}

// suseFixture is a SUSE-style disk: a btrfs root (partition 2 of a GPT
// disk) with subvolumes @home and @var, a read-only snapshot taken before
// a change, zstd-compressed files and a tree of extended attributes and
// ACLs (xattrs/), made through a kernel mount.
type suseFixture struct {
	disk  string // the GPT disk image (suseDiskSize)
	fsImg string // the btrfs filesystem alone (partition 2's bytes)
}

const (
	suseDiskSize = 303 * mib
	susePartOff  = 2 * mib
	// suseChanged is the file changed after the snapshot.
	suseChanged = "etcroot/etc/d00/file-0000.conf"
)

// buildSUSE makes the SUSE-style disk under dir.
func buildSUSE(t *testing.T, dir string) suseFixture {
	t.Helper()
	f := suseFixture{disk: filepath.Join(dir, "sda.img"), fsImg: filepath.Join(dir, "root.btrfs")}
	makeImage(t, f.fsImg, 300*mib)
	sh(t, "mkfs.btrfs", "-q", "-L", "suse-root", f.fsImg)
	f.withKernelMount(t, dir, "loop,compress=zstd", func(kmnt string) {
		makeGuestTree(t, filepath.Join(kmnt, "etcroot"), treeSpec{files: 400, bigDir: 300, depth: 8, bigFile: 16 * mib, links: true, modes: true, longNames: true, sparse: true}, 41)
		for _, sv := range []string{"@home", "@var"} {
			sh(t, "btrfs", "subvolume", "create", filepath.Join(kmnt, sv))
			makeGuestTree(t, filepath.Join(kmnt, sv, "data"), treeSpec{files: 100, bigDir: 20, depth: 3, bigFile: 2 * mib, links: true, modes: true}, 42)
		}
		// Extended attributes, ACLs and a capability (setfattr, setfacl,
		// setcap), dozens and hundreds of names on one file.
		testutil.XattrTree(t, filepath.Join(kmnt, "xattrs"), testutil.XattrTreeOptions{Many: true})
		os.MkdirAll(filepath.Join(kmnt, ".snapshots", "1"), 0o755)
		sh(t, "btrfs", "subvolume", "snapshot", "-r", kmnt, filepath.Join(kmnt, ".snapshots", "1", "snapshot"))
		if err := os.WriteFile(filepath.Join(kmnt, suseChanged), []byte("after the snapshot\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	f.writeDisk(t)
	return f
}

// writeDisk (re)writes the GPT disk image from fsImg.
func (f suseFixture) writeDisk(t *testing.T) {
	t.Helper()
	os.Remove(f.disk)
	makeImage(t, f.disk, suseDiskSize)
	sh(t, "sgdisk", "-n", "1:2048:+1M", "-t", "1:ef02", "-n", "2:0:+300M", f.disk)
	writeAt(t, f.disk, f.fsImg, susePartOff)
}

// withKernelMount mounts fsImg with opts at dir/kernel for fn and
// unmounts it afterwards.
func (f suseFixture) withKernelMount(t *testing.T, dir, opts string, fn func(kmnt string)) {
	t.Helper()
	kmnt := filepath.Join(dir, "kernel")
	umount := kernelMount(t, f.fsImg, kmnt, opts)
	fn(kmnt)
	umount()
}

// compareWithKernel compares the SUSE filesystem shown at root with the
// kernel's mount of the same bytes at kmnt: the top directory, each
// subvolume and the snapshot path by path (content, mode, links, times),
// and getfattr/getfacl of the whole tree.
func (suseFixture) compareWithKernel(t *testing.T, root, kmnt string) {
	t.Helper()
	if got, want := listNames(t, root), listNames(t, kmnt); got != want {
		t.Fatalf("root lists %s, kernel %s", got, want)
	}
	for _, sub := range []string{"etcroot", "@home", "@var", ".snapshots/1/snapshot/etcroot"} {
		t.Run(strings.ReplaceAll(sub, "/", "_"), func(t *testing.T) {
			compareTrees(t, walkTree(t, filepath.Join(kmnt, sub), nil), walkTree(t, filepath.Join(root, sub), nil),
				compareOpts{modes: true, links: true})
		})
	}
	gotAttr, gotACL := xattrDumps(t, root)
	wantAttr, wantACL := xattrDumps(t, kmnt)
	if gotAttr != wantAttr || !strings.Contains(wantAttr, "user.leaf-attribute-039") {
		t.Errorf("getfattr through the mount differs from the kernel mount:\n%s", firstDiff(gotAttr, wantAttr))
	}
	if gotACL != wantACL {
		t.Errorf("getfacl through the mount differs from the kernel mount:\n%s", firstDiff(gotACL, wantACL))
	}
}

// ntfsMetadata skips NTFS's own files ($MFT, ..., System Volume
// Information) when a tree read through the mount is compared with its
// source.
func ntfsMetadata(rel string) bool {
	return strings.HasPrefix(rel, "$") || rel == "System Volume Information"
}

// buildLDMDisks writes Windows dynamic disks of the sizes given under dir
// (disk0.img, ...; LDM database by internal/ldmfixture) holding vols,
// each an NTFS (mkntfs, filled through ntfs-3g) of a generated tree (the
// i-th volume's from seed+i). It returns the disk images and each
// volume's source tree by volume name.
func buildLDMDisks(t *testing.T, dir string, sizes []int64, vols []ldmfixture.Volume, seed uint64) ([]string, map[string]string) {
	t.Helper()
	imgs := ldmfixture.Build(sizes, vols)
	srcs := map[string]string{}
	for i, v := range vols {
		src := filepath.Join(dir, "src-"+v.Name)
		makeGuestTree(t, src, treeSpec{files: 150, bigDir: 100, depth: 5, bigFile: 4 * mib, longNames: true}, seed+uint64(i))
		srcs[v.Name] = src
		fsImg := filepath.Join(dir, v.Name+".ntfs")
		buildNTFSSized(t, fsImg, src, v.Size)
		data, err := os.ReadFile(fsImg)
		if err != nil {
			t.Fatal(err)
		}
		ldmfixture.Place(imgs, v, data)
		os.Remove(fsImg)
	}
	var disks []string
	for i, img := range imgs {
		p := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, p)
	}
	return disks, srcs
}

// partitionTable is one entry of `cairn partitions --json`: a disk, or a
// volume across disks (lvm/<vg>, md/<array>, ldm/<volume>,
// btrfs/<name>) with what it is made of.
type partitionTable struct {
	Disk       string   `json:"disk"`
	Table      string   `json:"table"`
	MadeOf     []string `json:"made_of"`
	Partitions []struct {
		Name        string   `json:"name"`
		Type        string   `json:"type"`
		Filesystem  string   `json:"filesystem"`
		Label       string   `json:"label"`
		Browsable   bool     `json:"browsable"`
		VG          string   `json:"volume_group"`
		Array       string   `json:"md_array"`
		LDM         []string `json:"ldm_volumes"`
		Why         string   `json:"why_not_browsable"`
		VolumeError string   `json:"volume_error"`
	} `json:"partitions"`
}

// cairnPartitions runs `cairn partitions --json` on a point of vm (""
// for the newest) and decodes it; raw is the output, for messages.
func cairnPartitions(t *testing.T, repoDir, vm, point string) (tables []partitionTable, raw string) {
	t.Helper()
	args := []string{"--repo", repoDir, "partitions", "--vm", vm, "--json"}
	if point != "" {
		args = append(args, "--point", point)
	}
	raw = mustCairn(t, args...)
	if err := json.Unmarshal([]byte(raw), &tables); err != nil {
		t.Fatalf("partitions --json: %v\n%s", err, raw)
	}
	return tables, raw
}

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
		members[s.Name] = raid1Members(t, dir, s, arrays[s.Name])
		os.Remove(arrays[s.Name])
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

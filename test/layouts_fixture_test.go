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

	readAll := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bootDir, pvDir := filepath.Join(dir, "boot-members"), filepath.Join(dir, "pv-members")
	os.Mkdir(bootDir, 0o755)
	os.Mkdir(pvDir, 0o755)
	bootMembers := bootSpec.Build(t, bootDir, readAll(bootImg))
	pvMembers := pvSpec.Build(t, pvDir, readAll(pvImg))
	for _, m := range append(bootMembers, pvMembers...) {
		if out := mdfixture.Examine(t, m); !strings.Contains(mdfixture.FieldOf(out, "Checksum"), "correct") {
			t.Fatalf("mdadm --examine %s:\n%s", m, out)
		}
	}
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
	os.Mkdir(kmnt, 0o755)
	sh(t, "mount", "-o", opts, f.fsImg, kmnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", kmnt).Run()
		}
	}()
	fn(kmnt)
	sh(t, "umount", kmnt)
	mounted = false
}

package testutil

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// NTFSXattrImage makes an NTFS image of size bytes at img with mkntfs and
// fills it through ntfs-3g with what cairn shows as extended attributes:
// alternate data streams (a Zone.Identifier, a 10 KiB non-resident one,
// one on a directory, a 100 KiB one too big for an xattr beside a small
// one), DOS
// attributes set through system.ntfs_attrib_be and a security descriptor
// set through system.ntfs_acl. It returns the paths, relative to the
// volume root, of the files holding them. Needs root, FUSE, mkntfs,
// ntfs-3g.
func NTFSXattrImage(t testing.TB, img string, size int64) []string {
	t.Helper()
	RequireTools(t, "mkntfs", "ntfs-3g", "umount")
	RequireFUSE(t)
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run("mkntfs", "-F", "-Q", "-q", img)
	mnt, err := os.MkdirTemp(filepath.Dir(img), "ntfs-3g-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(mnt)
	check := func(err error) {
		t.Helper()
		if err != nil {
			exec.Command("umount", "-l", mnt).Run()
			t.Fatal(err)
		}
	}
	// A stream larger than an xattr value can only be written as file:stream.
	run("ntfs-3g", "-o", "streams_interface=windows", img, mnt)
	check(os.WriteFile(filepath.Join(mnt, "big-stream.bin"), []byte("main data"), 0o644))
	check(os.WriteFile(filepath.Join(mnt, "big-stream.bin:huge"), bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16), 0o644))
	check(os.WriteFile(filepath.Join(mnt, "big-stream.bin:small"), []byte("fits"), 0o644))
	run("umount", mnt)

	run("ntfs-3g", "-o", "streams_interface=xattr", img, mnt)
	p := func(rel string) string { return filepath.Join(mnt, rel) }
	check(os.WriteFile(p("download.exe"), []byte("MZ not really"), 0o644))
	check(unix.Setxattr(p("download.exe"), "user.Zone.Identifier", []byte("[ZoneTransfer]\r\nZoneId=3\r\n"), 0))
	check(unix.Setxattr(p("download.exe"), "user.empty", nil, 0))
	check(os.WriteFile(p("two-streams.txt"), []byte("main"), 0o644))
	nonres := bytes.Repeat([]byte("non-resident stream "), 512)
	check(unix.Setxattr(p("two-streams.txt"), "user.nonresident", nonres, 0))
	check(unix.Setxattr(p("two-streams.txt"), "user.café ☕", []byte("unicode name"), 0))
	check(os.Mkdir(p("dir"), 0o755))
	check(unix.Setxattr(p("dir"), "user.dirstream", []byte("on a directory"), 0))
	check(unix.Setxattr(p("dir"), "system.ntfs_attrib_be", []byte{0, 0, 0, 0x02 | 0x04}, 0)) // hidden, system
	check(os.WriteFile(p("dir/readonly-archive.txt"), []byte("ra"), 0o644))
	check(unix.Setxattr(p("dir/readonly-archive.txt"), "system.ntfs_attrib_be", []byte{0, 0, 0, 0x01 | 0x20}, 0))
	check(os.WriteFile(p("acl.txt"), []byte("acl"), 0o644))
	check(unix.Setxattr(p("acl.txt"), "system.ntfs_acl", testSD(), 0))
	check(os.WriteFile(p("plain.txt"), []byte("nothing special"), 0o644))
	run("umount", mnt)
	return []string{".", "download.exe", "two-streams.txt", "dir", "dir/readonly-archive.txt", "acl.txt", "plain.txt", "big-stream.bin"}
}

// testSD is a self-relative security descriptor: owner BUILTIN\Administrators,
// group SYSTEM, a DACL allowing Everyone read and Administrators full control.
func testSD() []byte {
	sid := func(auth byte, subs ...uint32) []byte {
		b := []byte{1, byte(len(subs)), 0, 0, 0, 0, 0, auth}
		for _, s := range subs {
			b = binary.LittleEndian.AppendUint32(b, s)
		}
		return b
	}
	ace := func(mask uint32, s []byte) []byte {
		b := []byte{0, 0} // ACCESS_ALLOWED, no flags
		b = binary.LittleEndian.AppendUint16(b, uint16(8+len(s)))
		b = binary.LittleEndian.AppendUint32(b, mask)
		return append(b, s...)
	}
	admins, system, everyone := sid(5, 32, 544), sid(5, 18), sid(1, 0)
	aces := append(ace(0x120089, everyone), ace(0x1F01FF, admins)...)
	acl := []byte{2, 0}
	acl = binary.LittleEndian.AppendUint16(acl, uint16(8+len(aces)))
	acl = binary.LittleEndian.AppendUint16(acl, 2)
	acl = append(acl, 0, 0)
	acl = append(acl, aces...)
	le := binary.LittleEndian
	sd := []byte{1, 0}
	sd = le.AppendUint16(sd, 0x8004) // self-relative, DACL present
	owner := 20
	group := owner + len(admins)
	dacl := group + len(system)
	sd = le.AppendUint32(sd, uint32(owner))
	sd = le.AppendUint32(sd, uint32(group))
	sd = le.AppendUint32(sd, 0)
	sd = le.AppendUint32(sd, uint32(dacl))
	sd = append(sd, admins...)
	sd = append(sd, system...)
	return append(sd, acl...)
}

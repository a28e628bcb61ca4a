package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestNTFSXattrsThroughMount writes alternate data streams, DOS
// attributes and a security descriptor through ntfs-3g, imports the
// image and checks that getfattr through cairn's FUSE mount prints what
// it prints on an ntfs-3g -o streams_interface=xattr mount of the same
// image: the listed user.* streams (getfattr -d -m -) and the get-only
// system.ntfs_* values asked by name. restore-file writes the streams
// back as user.* attributes and leaves system.ntfs_* out.
func TestNTFSXattrsThroughMount(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "getfattr", "ntfs-3g", "mkntfs", "mkfs.xfs")
	dir := t.TempDir()
	img := filepath.Join(dir, "ntfs.img")
	testutil.NTFSXattrImage(t, img, 64*mib)
	kmnt := filepath.Join(dir, "ntfs-3g")
	os.Mkdir(kmnt, 0o755)
	sh(t, "ntfs-3g", "-o", "ro,streams_interface=xattr", img, kmnt)
	defer exec.Command("umount", kmnt).Run()
	dump := func(root string) string {
		// user.huge (100 KiB) cannot be read as an xattr; checked below.
		return sortedBlocks(inDir(t, root, "getfattr", "-R", "-P", "-h", "-d", "-m", `^user\.[^h]`, "-e", "hex", "."))
	}
	named := func(root string) string {
		var b strings.Builder
		for _, q := range [][2]string{{"acl.txt", "system.ntfs_acl"}, {"dir", "system.ntfs_attrib_be"}, {"dir/readonly-archive.txt", "system.ntfs_attrib"},
			{"plain.txt", "system.ntfs_times"}, {"download.exe", "system.ntfs_crtime_be"}, {".", "system.ntfs_acl"}} {
			b.WriteString(inDir(t, root, "getfattr", "-h", "-e", "hex", "-n", q[1], q[0]))
		}
		return b.String()
	}
	wantDump, wantNamed := dump(kmnt), named(kmnt)
	for _, must := range []string{"user.Zone.Identifier=", "user.nonresident=", "user.dirstream="} {
		if !strings.Contains(wantDump, must) {
			t.Fatalf("fixture lacks %s:\n%s", must, wantDump)
		}
	}

	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	point := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "win", "--disk", "sda", img))
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	root := filepath.Join(mnt, "win", point, "fs", "sda", "whole")
	if got := dump(root); got != wantDump {
		t.Errorf("getfattr -d through the mount differs from ntfs-3g:\n%s", firstDiff(got, wantDump))
	}
	if got := named(root); got != wantNamed {
		t.Errorf("getfattr -n system.ntfs_* through the mount differs from ntfs-3g:\n%s", firstDiff(got, wantNamed))
	}
	// A 100 KiB stream is too big for any xattr: E2BIG, not bytes cut short.
	if out, err := exec.Command("getfattr", "-n", "user.huge", filepath.Join(root, "big-stream.bin")).CombinedOutput(); err == nil || !strings.Contains(string(out), "too long") {
		t.Errorf("getfattr of a 100 KiB stream: %v %s, want Argument list too long", err, out)
	}

	target := filepath.Join(dir, "target")
	os.Mkdir(target, 0o755)
	targetImg := filepath.Join(dir, "target.img")
	makeImage(t, targetImg, 320*mib)
	sh(t, "mkfs.xfs", "-q", "-f", targetImg)
	sh(t, "mount", "-o", "loop", targetImg, target)
	defer exec.Command("umount", target).Run()
	dest := filepath.Join(target, "two-streams.txt")
	mustCairn(t, "--repo", repoDir, "restore-file", "--vm", "win", "--point", point, "--disk", "sda", "--part", "whole", "/two-streams.txt", dest)
	got := inDir(t, target, "getfattr", "-h", "-d", "-m", "-", "-e", "hex", "two-streams.txt")
	want := inDir(t, kmnt, "getfattr", "-h", "-d", "-m", "-", "-e", "hex", "two-streams.txt")
	if got != want {
		t.Errorf("restored streams differ from ntfs-3g's:\n%s", firstDiff(got, want))
	}
	// A 100 KiB stream cannot be an xattr: the file and its small stream
	// are restored, the big one is reported by name and the exit fails.
	big := filepath.Join(target, "big-stream.bin")
	res := runCairn(t, nil, "--repo", repoDir, "restore-file", "--vm", "win", "--point", point, "--disk", "sda", "--part", "whole", "/big-stream.bin", big)
	if res.code == 0 || !strings.Contains(res.stdout+res.stderr, `"huge" (102400 bytes)`) {
		t.Errorf("restore-file of a file with a 100 KiB stream: exit %d, %s%s; want a failure naming the stream", res.code, res.stdout, res.stderr)
	}
	if b, err := os.ReadFile(big); err != nil || string(b) != "main data" {
		t.Errorf("restored big-stream.bin: %q, %v", b, err)
	}
	if out := inDir(t, target, "getfattr", "-h", "-d", "big-stream.bin"); !strings.Contains(out, `user.small="fits"`) {
		t.Errorf("the small stream beside a big one was not restored:\n%s", out)
	}
}

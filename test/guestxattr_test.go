package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// xattrFixture is one whole-disk filesystem image filled through a kernel
// loop mount with testutil.XattrTree, and what a kernel mount shows of it.
type xattrFixture struct {
	name, img string
	getfattr  string // getfattr -R -d -m - -e hex, relative paths
	getfacl   string // getfacl -R
	root      syscall.Stat_t
}

// inDir runs a command in dir and returns its standard output. The shell
// changes directory after exec: a child that changed into a FUSE mount
// served by this process between fork and exec (cmd.Dir) deadlocks with
// the server (the kernel's ACCESS request waits on the paused parent).
func inDir(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", `cd "$0" && exec "$@"`, dir, name}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s in %s: %v", name, strings.Join(args, " "), dir, err)
	}
	return string(out)
}

// xattrDumps returns what getfattr and getfacl print for the tree at dir,
// one block per file, the blocks sorted by path (the walk follows readdir
// order, which differs between readers; each block is kept as printed).
func xattrDumps(t testing.TB, dir string) (string, string) {
	return sortedBlocks(inDir(t, dir, "getfattr", "-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", ".")),
		sortedBlocks(inDir(t, dir, "getfacl", "-R", "-P", "-n", "."))
}

func sortedBlocks(s string) string {
	blocks := strings.Split(strings.TrimSpace(s), "\n\n")
	slices.Sort(blocks)
	return strings.Join(blocks, "\n\n") + "\n"
}

func buildXattrFixture(t testing.TB, dir, name string, mkfs []string, o testutil.XattrTreeOptions) xattrFixture {
	img := filepath.Join(dir, name+".img")
	makeImage(t, img, 320*mib)
	sh(t, mkfs[0], append(mkfs[1:], img)...)
	mnt := filepath.Join(dir, "mnt-"+name)
	os.Mkdir(mnt, 0o755)
	sh(t, "mount", "-o", "loop", img, mnt)
	defer exec.Command("umount", mnt).Run()
	testutil.XattrTree(t, mnt, o)
	// A root directory nothing else would give: mode, owner, times, links.
	os.Mkdir(filepath.Join(mnt, "one-more-dir"), 0o755)
	os.Chmod(mnt, 0o1750)
	os.Chown(mnt, 1234, 5678)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	os.Chtimes(mnt, old, old)
	sh(t, "umount", mnt)
	sh(t, "mount", "-o", "loop,ro", img, mnt)
	f := xattrFixture{name: name, img: img}
	f.getfattr, f.getfacl = xattrDumps(t, mnt)
	if err := syscall.Stat(mnt, &f.root); err != nil {
		t.Fatal(err)
	}
	sh(t, "umount", mnt)
	return f
}

// TestGuestXattrsThroughMount fills ext4 (ea_inode) and XFS images with
// extended attributes, ACLs, a file capability, SELinux labels and mode
// 0000 entries through kernel loop mounts, imports them, and checks
// through the FUSE mount that getfattr and getfacl print exactly what
// they print on a kernel mount of the same image, that mode 0000 stays
// 0000, and that fs/<disk>/whole/ itself shows the root inode's mode,
// owner, times and link count.
func TestGuestXattrsThroughMount(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs", "getfattr", "getfacl", "setfattr", "setfacl", "setcap")
	dir := t.TempDir()
	fixtures := []xattrFixture{
		buildXattrFixture(t, dir, "ext4", []string{"mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "ea_inode"}, testutil.XattrTreeOptions{Huge: true}),
		buildXattrFixture(t, dir, "xfs", []string{"mkfs.xfs", "-q", "-f"}, testutil.XattrTreeOptions{Huge: true, Many: true}),
	}
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	points := map[string]string{}
	for _, f := range fixtures {
		points[f.name] = strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "x-"+f.name, "--disk", "sda", f.img))
	}
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	// restore-file writes into a kernel-mounted XFS: the host's own
	// filesystem may not hold 60 KiB values.
	target := filepath.Join(dir, "target")
	os.Mkdir(target, 0o755)
	targetImg := filepath.Join(dir, "target.img")
	makeImage(t, targetImg, 320*mib)
	sh(t, "mkfs.xfs", "-q", "-f", targetImg)
	sh(t, "mount", "-o", "loop", targetImg, target)
	defer exec.Command("umount", target).Run()
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			root := filepath.Join(mnt, "x-"+f.name, points[f.name], "fs", "sda", "whole")
			var st syscall.Stat_t
			if err := syscall.Stat(root, &st); err != nil {
				t.Fatal(err)
			}
			k := f.root
			got := fmt.Sprintf("mode %o uid %d gid %d nlink %d mtime %d.%09d", st.Mode, st.Uid, st.Gid, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec)
			want := fmt.Sprintf("mode %o uid %d gid %d nlink %d mtime %d.%09d", k.Mode, k.Uid, k.Gid, k.Nlink, k.Mtim.Sec, k.Mtim.Nsec)
			if got != want {
				t.Errorf("fs/sda/whole shows %s, the root inode is %s", got, want)
			}
			for _, p := range []string{"mode0000", "dir0000"} {
				var s syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(root, p), &s); err != nil {
					t.Fatal(err)
				}
				if s.Mode&0o7777 != 0 {
					t.Errorf("%s: mode %o through the mount, 0000 on the guest", p, s.Mode&0o7777)
				}
			}
			gotAttr, gotACL := xattrDumps(t, root)
			if gotAttr != f.getfattr {
				t.Errorf("getfattr through the mount differs from the kernel mount:\n%s", firstDiff(gotAttr, f.getfattr))
			}
			if gotACL != f.getfacl {
				t.Errorf("getfacl through the mount differs from the kernel mount:\n%s", firstDiff(gotACL, f.getfacl))
			}
			for _, must := range []string{"security.capability=", "security.selinux=", "system.posix_acl_access=", "system.posix_acl_default=", "trusted.onlink=", "user.big60k="} {
				if !strings.Contains(f.getfattr, must) {
					t.Errorf("fixture lacks %s: the comparison proves less than it claims", must)
				}
			}
			t.Logf("%d getfattr lines, %d getfacl lines equal to the kernel mount's", strings.Count(gotAttr, "\n"), strings.Count(gotACL, "\n"))

			// restore-file writes the same attributes, ACLs, capabilities and
			// labels onto the restored tree; --no-xattrs leaves them out.
			dest := filepath.Join(target, "restored-"+f.name)
			mustCairn(t, "--repo", repoDir, "restore-file", "--vm", "x-"+f.name, "--point", points[f.name], "--disk", "sda", "--part", "whole", "/", dest)
			resAttr, resACL := xattrDumps(t, dest)
			// The target is XFS, which also lists its ACLs as trusted.SGI_ACL_*.
			if a, b := dropXFSACLs(resAttr), dropXFSACLs(f.getfattr); a != b {
				t.Errorf("getfattr of the restored tree differs from the kernel mount:\n%s", firstDiff(a, b))
			}
			if resACL != f.getfacl {
				t.Errorf("getfacl of the restored tree differs from the kernel mount:\n%s", firstDiff(resACL, f.getfacl))
			}
			bare := filepath.Join(target, "bare-"+f.name)
			mustCairn(t, "--repo", repoDir, "restore-file", "--no-xattrs", "--vm", "x-"+f.name, "--point", points[f.name], "--disk", "sda", "--part", "whole", "/", bare)
			if out := inDir(t, bare, "getfattr", "-R", "-P", "-h", "-d", "-m", "-", "."); strings.TrimSpace(out) != "" {
				t.Errorf("restore-file --no-xattrs wrote extended attributes:\n%.600s", out)
			}
		})
	}
}

// firstDiff shows the first differing line of two texts with context.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			trim := func(s string) string {
				if len(s) > 160 {
					return s[:160] + "..."
				}
				return s
			}
			lo := max(0, i-3)
			return fmt.Sprintf("line %d:\n  mount:  %s\n  kernel: %s\ncontext (kernel):\n  %s", i+1, trim(gl), trim(wl), strings.Join(w[lo:min(i+1, len(w))], "\n  "))
		}
	}
	return "(equal)"
}

// dropXFSACLs removes the trusted.SGI_ACL_* lines XFS shows beside its
// system.posix_acl_* names.
func dropXFSACLs(dump string) string {
	var keep []string
	for _, l := range strings.Split(dump, "\n") {
		if !strings.HasPrefix(l, "trusted.SGI_ACL_") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestCrashedXFSPoint imports an XFS image copied from a running system
// (shut down with its log flushed, metadata not written back): the point
// shows the files whose metadata is only in the log, and `cairn
// partitions` says that the log was replayed.
func TestCrashedXFSPoint(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.xfs", "xfs_io", "xfs_logprint")
	dir := t.TempDir()
	img := filepath.Join(dir, "crashed.img")
	makeImage(t, img, 320*mib)
	sh(t, "mkfs.xfs", "-q", "-f", img)
	m := filepath.Join(dir, "m")
	os.Mkdir(m, 0o755)
	sh(t, "mount", "-o", "loop", img, m)
	defer exec.Command("umount", m).Run()
	os.WriteFile(filepath.Join(m, "before.txt"), []byte("before\n"), 0o644)
	sh(t, "sync")
	os.Mkdir(filepath.Join(m, "only-in-log"), 0o755)
	for i := 0; i < 50; i++ {
		os.WriteFile(filepath.Join(m, "only-in-log", fmt.Sprintf("f%02d", i)), []byte(fmt.Sprintf("%d\n", i)), 0o644)
	}
	sh(t, "sync")
	sh(t, "xfs_io", "-x", "-c", "shutdown -f", m)
	sh(t, "umount", m)
	if out, _ := exec.Command("xfs_logprint", "-t", img).CombinedOutput(); !strings.Contains(string(out), "DIRTY") {
		t.Fatalf("fixture log not dirty:\n%.1000s", out)
	}
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	point := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "crashed", "--disk", "sda", img))
	out := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "crashed", "--json")
	if !strings.Contains(out, `"recovered": "log replayed:`) {
		t.Errorf("partitions --json does not say the log was replayed:\n%s", out)
	}
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	root := filepath.Join(mnt, "crashed", point, "fs", "sda", "whole")
	ents, err := os.ReadDir(filepath.Join(root, "only-in-log"))
	if err != nil || len(ents) != 50 {
		t.Fatalf("only-in-log: %d entries, %v; want the 50 files the log holds", len(ents), err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "only-in-log", "f42")); err != nil || string(b) != "42\n" {
		t.Fatalf("only-in-log/f42 = %q, %v", b, err)
	}
}

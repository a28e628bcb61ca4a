package ntfs_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/ntfs"
)

// ntfs3gXattrNames are the get-only names compared with ntfs-3g.
var ntfs3gXattrNames = []string{"system.ntfs_attrib", "system.ntfs_attrib_be", "system.ntfs_acl",
	"system.ntfs_times", "system.ntfs_times_be", "system.ntfs_crtime", "system.ntfs_crtime_be", "system.ntfs_reparse_data",
	"security.selinux", "system.posix_acl_access", "user.absent"}

// TestNTFSXattrsMatchNtfs3g writes streams, DOS attributes and a security
// descriptor through ntfs-3g, then checks that cairn's reader lists and
// returns exactly what ntfs-3g -o streams_interface=xattr does for every
// file: listxattr names, every user.* value and every system.ntfs_* value
// (or the same absence).
func TestNTFSXattrsMatchNtfs3g(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	const size = 32 << 20
	paths := testutil.NTFSXattrImage(t, img, size)
	mnt := filepath.Join(dir, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	out, err := exec.Command("ntfs-3g", "-o", "ro,streams_interface=xattr", img, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("ntfs-3g: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()

	f, err := os.Open(img)
	must(t, err)
	defer f.Close()
	raw, err := ntfs.Open(f, 0, size)
	must(t, err)
	v := partinfo.Safe(raw, "ntfs")
	g, ok := partinfo.XattrGetterOf(v)
	if !ok {
		t.Fatal("the NTFS reader has no XattrGetter")
	}
	compared := 0
	for _, p := range paths {
		ino := v.Root()
		if p != "." {
			if ino, err = lookupPath(v, p); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		kp := filepath.Join(mnt, p)
		want := listxattr(t, kp)
		got, err := g.XattrNames(ino)
		must(t, err)
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Errorf("%s: listxattr %q, ntfs-3g %q", p, got, want)
		}
		for _, name := range append(want, ntfs3gXattrNames...) {
			wv, werr := getxattr(kp, name)
			gv, gerr := g.Xattr(ino, name)
			switch {
			case errors.Is(werr, unix.ENODATA):
				if !errors.Is(gerr, partinfo.ErrNoSuchXattr) {
					t.Errorf("%s %s: ntfs-3g has none, cairn %x, %v", p, name, gv, gerr)
				}
			case errors.Is(werr, unix.E2BIG) || errors.Is(werr, unix.ERANGE):
				if !errors.Is(gerr, partinfo.ErrXattrTooLarge) {
					t.Errorf("%s %s: too large for ntfs-3g (%v), cairn %d bytes, %v", p, name, werr, len(gv), gerr)
				}
			case werr != nil:
				t.Errorf("%s %s: ntfs-3g: %v", p, name, werr)
			case gerr != nil:
				t.Errorf("%s %s: %v (ntfs-3g %x)", p, name, gerr, wv)
			case !bytes.Equal(gv, wv):
				t.Errorf("%s %s: cairn %x, ntfs-3g %x", p, name, gv, wv)
			default:
				compared++
			}
		}
	}
	t.Logf("%d values equal to ntfs-3g's", compared)
	// Xattrs (restore-file's view) refuses the 100 KiB stream by name.
	ino, err := lookupPath(v, "big-stream.bin")
	must(t, err)
	if xs, err := partinfo.Xattrs(v, ino); !errors.Is(err, partinfo.ErrXattrTooLarge) || !strings.Contains(err.Error(), `"huge" (102400 bytes)`) || len(xs) != 1 || xs[0].Name != "user.small" {
		t.Errorf("Xattrs of a 100 KiB stream: %d attributes, %v; want user.small and ErrXattrTooLarge naming huge", len(xs), err)
	}
	ino, err = lookupPath(v, "two-streams.txt")
	must(t, err)
	xs, err := partinfo.Xattrs(v, ino)
	must(t, err)
	if len(xs) != 2 || xs[1].Name != "user.nonresident" || !bytes.Equal(xs[1].Value, bytes.Repeat([]byte("non-resident stream "), 512)) {
		t.Errorf("Xattrs of two-streams.txt: %d attributes, want user.café ☕ and the 10 KiB user.nonresident", len(xs))
	}
}

func listxattr(t *testing.T, p string) []string {
	t.Helper()
	b := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, b)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var out []string
	for _, s := range strings.Split(string(b[:n]), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func getxattr(p, name string) ([]byte, error) {
	b := make([]byte, 64<<10)
	n, err := unix.Lgetxattr(p, name, b)
	if err != nil {
		return nil, err
	}
	return b[:n], nil
}

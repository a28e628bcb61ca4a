package fsopen_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// kernelXattrs lists path's extended attributes through the kernel mount
// (one large buffer, so XFS gives them in on-disk order) as "name=hex" lines.
func kernelXattrs(t *testing.T, path string) []string {
	t.Helper()
	buf := make([]byte, 1<<20)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 1<<17)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", path, name, err)
		}
		out = append(out, fmt.Sprintf("%s=%x", name, val[:m]))
	}
	return out
}

// TestXattrsMatchKernel fills ext4 (in-inode, external block, ea_inode
// values) and XFS (shortform, leaf, node and remote forms) through kernel
// loop mounts with setfattr, setfacl and setcap, then checks that the
// readers list every inode's extended attributes — names, order and
// values, ACLs in the Linux xattr format — exactly as the kernel does.
func TestXattrsMatchKernel(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs", "mount", "umount", "setfattr", "setfacl", "setcap")
	cases := []struct {
		name string
		mkfs []string
		opts testutil.XattrTreeOptions
	}{
		{"ext4", []string{"mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256"}, testutil.XattrTreeOptions{}},
		{"ext4-ea_inode", []string{"mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "ea_inode"}, testutil.XattrTreeOptions{Huge: true}},
		{"ext3", []string{"mkfs.ext3", "-q", "-F", "-b", "4096", "-I", "128"}, testutil.XattrTreeOptions{}},
		{"xfs", []string{"mkfs.xfs", "-q", "-f"}, testutil.XattrTreeOptions{Huge: true, Many: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "fs.img")
			fixture.Image(t, img, 300<<20)
			fixture.Run(t, nil, c.mkfs[0], append(c.mkfs[1:], img)...)
			mnt := filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o755)
			fixture.Run(t, nil, "mount", "-o", "loop", img, mnt)
			mounted := true
			defer func() {
				if mounted {
					exec.Command("umount", mnt).Run()
				}
			}()
			testutil.XattrTree(t, mnt, c.opts)
			want := map[string][]string{}
			filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					t.Fatal(err)
				}
				rel, _ := filepath.Rel(mnt, p)
				want[rel] = kernelXattrs(t, p)
				return nil
			})
			fixture.Run(t, nil, "umount", mnt)
			mounted = false

			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			d := partinfo.Detect(f, 0, st.Size())
			fsys, err := fsopen.Open(f, 0, st.Size(), d)
			if err != nil {
				t.Fatal(err)
			}
			gfs := partinfo.AsFS(fsys)
			compared, attrs := 0, 0
			for rel, w := range want {
				fi, err := fs.Lstat(gfs, filepath.ToSlash(rel))
				if err != nil {
					t.Errorf("%s: %v", rel, err)
					continue
				}
				xs, err := partinfo.Xattrs(fsys, fi.Sys().(partinfo.Attr).Ino)
				if err != nil {
					t.Errorf("%s: xattrs: %v", rel, err)
					continue
				}
				var got []string
				for _, x := range xs {
					got = append(got, fmt.Sprintf("%s=%x", x.Name, x.Value))
				}
				if strings.Join(got, "\n") != strings.Join(w, "\n") {
					t.Errorf("%s: reader lists\n%s\nkernel lists\n%s", rel, short(got), short(w))
				}
				compared++
				attrs += len(w)
			}
			if attrs < 10 {
				t.Fatalf("only %d attributes compared: the fixture is broken", attrs)
			}
			t.Logf("%d inodes, %d extended attributes equal to the kernel's", compared, attrs)
		})
	}
}

func short(xs []string) string {
	var b bytes.Buffer
	for _, x := range xs {
		if len(x) > 120 {
			x = fmt.Sprintf("%s...(%d chars)", x[:120], len(x))
		}
		b.WriteString("  " + x + "\n")
	}
	return b.String()
}

package xfs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// protoImage formats a size-byte image with mkfs.xfs and fills it from the
// source tree src through a prototype file, without mounting: this is how
// the tests make v4 images, which this kernel no longer mounts.
func protoImage(t testing.TB, src string, size int64, mkfsArgs ...string) string {
	t.Helper()
	testutil.RequireTools(t, "mkfs.xfs")
	var b strings.Builder
	b.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var emit func(dir string, depth int)
	emit = func(dir string, depth int) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			info, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			mode := protoMode(info.Mode())
			indent := strings.Repeat(" ", depth)
			switch {
			case info.IsDir():
				fmt.Fprintf(&b, "%s%s %s 0 0\n", indent, e.Name(), mode)
				emit(p, depth+1)
				fmt.Fprintf(&b, "%s$\n", indent)
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%s%s %s 0 0 %s\n", indent, e.Name(), mode, target)
			default:
				fmt.Fprintf(&b, "%s%s %s 0 0 %s\n", indent, e.Name(), mode, p)
			}
		}
	}
	emit(src, 1)
	b.WriteString("$\n")
	tmp := t.TempDir()
	proto := filepath.Join(tmp, "proto")
	if err := os.WriteFile(proto, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "xfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "mkfs.xfs", append(append([]string{"-q", "-f", "-p", proto}, mkfsArgs...), img)...)
	return img
}

// protoMode renders a mode as the prototype file's six-character string.
func protoMode(m fs.FileMode) string {
	typ := "-"
	switch {
	case m.IsDir():
		typ = "d"
	case m&fs.ModeSymlink != 0:
		typ = "l"
	}
	u, g := "-", "-"
	if m&fs.ModeSetuid != 0 {
		u = "u"
	}
	if m&fs.ModeSetgid != 0 {
		g = "g"
	}
	return fmt.Sprintf("%s%s%s%03o", typ, u, g, m.Perm())
}

// smallSource writes a small tree: one directory of each format, inline
// and remote symlinks, files of several sizes.
func smallSource(t testing.TB) string {
	t.Helper()
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{3, 50, 300} {
		d := filepath.Join(src, fmt.Sprintf("d%d", n))
		must(os.Mkdir(d, 0o755))
		for i := 0; i < n; i++ {
			must(os.WriteFile(filepath.Join(d, fmt.Sprintf("entry-%04d", i)), []byte(strings.Repeat("x", i%50)), 0o644))
		}
	}
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	must(os.WriteFile(filepath.Join(src, "file300k"), data, 0o640))
	must(os.WriteFile(filepath.Join(src, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(src, "setuid"), []byte("s"), 0o755))
	must(os.Chmod(filepath.Join(src, "setuid"), 0o755|fs.ModeSetuid))
	must(os.Symlink("file300k", filepath.Join(src, "short-link")))
	must(os.Symlink(strings.Repeat("remote/", 90), filepath.Join(src, "remote-link")))
	return src
}

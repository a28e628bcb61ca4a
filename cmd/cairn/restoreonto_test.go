package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
)

// TestRestoreDirOntoNonDirectory: a guest directory restored where DEST
// (or an entry below it) is an existing file or a symlink is refused for
// that entry, as cp -a refuses it. It used to take the existing file for
// the directory (its mode, times and xattrs were overwritten with the
// directory's, and every child FAILED with "not a directory"), and to
// follow a symlink out of DEST, writing the children wherever it pointed.
func TestRestoreDirOntoNonDirectory(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	mustT(t, os.MkdirAll(filepath.Join(src, "etc", "sub"), 0o755))
	mustT(t, os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("guest\n"), 0o644))
	mustT(t, os.WriteFile(filepath.Join(src, "etc", "sub", "f"), []byte("f\n"), 0o644))
	fsys := ext4Of(t, src, 8<<20)

	t.Run("file", func(t *testing.T) {
		existing := filepath.Join(t.TempDir(), "existing")
		mustT(t, os.WriteFile(existing, []byte("keep me\n"), 0o600))
		rep, lines, err := restore(t, fsys, "etc", existing, false)
		if err != nil {
			t.Fatalf("restore stopped: %v\n%s", err, lines)
		}
		if rep.failed != 1 || rep.restored != 0 || !strings.Contains(lines, "FAILED /etc: ") || !strings.Contains(lines, "not a directory") {
			t.Errorf("report %+v, want one FAILED /etc saying DEST is not a directory:\n%s", rep, lines)
		}
		fi, err := os.Stat(existing)
		if b, _ := os.ReadFile(existing); err != nil || fi.Mode().Perm() != 0o600 || string(b) != "keep me\n" {
			t.Errorf("the existing file was changed: mode %v, %q, %v", fi.Mode(), b, err)
		}
	})
	t.Run("file onto a directory", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "etc")
		mustT(t, os.MkdirAll(filepath.Join(dest, "hostname", "mine"), 0o755))
		rep, lines, err := restore(t, fsys, "etc", dest, false)
		if err != nil {
			t.Fatalf("restore stopped: %v\n%s", err, lines)
		}
		if rep.failed != 1 || !strings.Contains(lines, "FAILED /etc/hostname: ") || !strings.Contains(lines, "exists and is a directory") {
			t.Errorf("report %+v, want /etc/hostname FAILED as a directory in the way:\n%s", rep, lines)
		}
		if _, err := os.Stat(filepath.Join(dest, "hostname", "mine")); err != nil {
			t.Errorf("the directory in the way was changed: %v", err)
		}
	})
	t.Run("symlink below DEST", func(t *testing.T) {
		d := t.TempDir()
		outside := filepath.Join(d, "outside")
		mustT(t, os.Mkdir(outside, 0o755))
		dest := filepath.Join(d, "etc")
		mustT(t, os.Mkdir(dest, 0o755))
		mustT(t, os.Symlink(outside, filepath.Join(dest, "sub")))
		rep, lines, err := restore(t, fsys, "etc", dest, false)
		if err != nil {
			t.Fatalf("restore stopped: %v\n%s", err, lines)
		}
		if rep.failed != 1 || !strings.Contains(lines, "FAILED /etc/sub: ") {
			t.Errorf("report %+v, want /etc/sub FAILED:\n%s", rep, lines)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Errorf("the restore wrote through the symlink into %s: %v", outside, ents)
		}
		if b, err := os.ReadFile(filepath.Join(dest, "hostname")); err != nil || string(b) != "guest\n" {
			t.Errorf("hostname: %q %v", b, err)
		}
	})
}

// ext4Of makes an ext4 image of size bytes holding the tree src
// (mkfs.ext4 -d) and opens it.
func ext4Of(t *testing.T, src string, size int64) partinfo.Filesystem {
	t.Helper()
	img := filepath.Join(t.TempDir(), "e.img")
	sparseImage(t, img, size)
	run(t, "mkfs.ext4", "-q", "-d", src, img)
	raw, err := os.ReadFile(img)
	mustT(t, err)
	return openImage(t, raw)
}

package xfs

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestV4 reads a v4 (no CRC, no ftype) filesystem that mkfs.xfs filled
// from a prototype file and compares names, modes, contents and symlink
// targets with the source tree.
func TestV4(t *testing.T) {
	src := smallSource(t)
	img := protoImage(t, src, 64<<20, "-m", "crc=0", "-n", "ftype=0")
	x := openImage(t, img)
	if x.sb.v5() || x.sb.hasFtype() {
		t.Fatalf("want a v4 filesystem without ftype, got version %#x", x.sb.versionNum)
	}
	compareWithSource(t, x, src, false)
}

// TestGeometries reads images of other block, inode and directory block
// sizes, AG counts and inode features, filled from a prototype file.
func TestGeometries(t *testing.T) {
	src := smallSource(t)
	for _, args := range [][]string{
		{"-b", "size=1024"},
		{"-b", "size=65536", "-d", "size=1g"},
		{"-n", "size=16384"},
		{"-b", "size=1024", "-n", "size=8192"},
		{"-i", "size=1024"},
		{"-i", "size=2048", "-d", "size=128m,agcount=8"},
		{"-i", "nrext64=1"},
		{"-m", "bigtime=0,finobt=0,reflink=0", "-i", "sparse=0"},
		{"-m", "crc=0", "-b", "size=512"},
		{"-m", "crc=0", "-n", "size=16384"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if !slices.Contains(args, "-d") {
				args = append(args, "-d", "size=128m")
			}
			x := openImage(t, protoImage(t, src, 1<<30, args...))
			compareWithSource(t, x, src, x.sb.v5())
		})
	}
}

// TestV5Proto reads a v5 filesystem filled from a prototype file (no mount
// needed) and compares it with the source tree. mkfs.xfs 6.1 writes remote
// symlink blocks of v5 prototype images without their header; the kernel
// refuses them ("Structure needs cleaning") and so must the reader.
func TestV5Proto(t *testing.T) {
	src := smallSource(t)
	x := openImage(t, protoImage(t, src, 64<<20))
	if !x.sb.v5() {
		t.Fatal("want a v5 filesystem")
	}
	compareWithSource(t, x, src, true)
}

// compareWithSource walks the reader's tree and the source directory
// together (the prototype file keeps modes, contents and targets).
func compareWithSource(t *testing.T, x *xfs, src string, headerlessRemoteLinks bool) {
	t.Helper()
	// A second reader answers Lookup through the hash index only.
	hashed, err := Open(x.r, x.base, x.geo.partSize)
	if err != nil {
		t.Fatal(err)
	}
	hashed.(*xfs).hashLookupFrom = 0
	count := 0
	var walk func(rel string, ino uint64)
	walk = func(rel string, ino uint64) {
		entries, err := x.ReadDir(ino)
		if err != nil {
			t.Fatalf("readdir %s: %v", rel, err)
		}
		srcEntries, err := os.ReadDir(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(srcEntries) {
			t.Errorf("%s: %d entries, source has %d", rel, len(entries), len(srcEntries))
		}
		if _, err := hashed.Lookup(ino, "no-such-name"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: hashed lookup of a missing name: %v", rel, err)
		}
		for _, e := range entries {
			count++
			p := path.Join(rel, e.Name)
			if got, err := hashed.Lookup(ino, e.Name); err != nil || got != e.Ino {
				t.Errorf("%s: hashed lookup = %d, %v; want %d", p, got, err, e.Ino)
			}
			info, err := os.Lstat(filepath.Join(src, p))
			if err != nil {
				t.Errorf("%s: not in the source: %v", p, err)
				continue
			}
			a, err := x.Stat(e.Ino)
			if err != nil {
				t.Fatalf("stat %s: %v", p, err)
			}
			if a.Mode != info.Mode() || e.Type != info.Mode().Type() || (info.Mode().IsRegular() && a.Size != info.Size()) {
				t.Errorf("%s: mode %v type %v size %d; source %v size %d", p, a.Mode, e.Type, a.Size, info.Mode(), info.Size())
			}
			switch {
			case info.IsDir():
				walk(p, e.Ino)
			case info.Mode()&fs.ModeSymlink != 0:
				want, _ := os.Readlink(filepath.Join(src, p))
				got, err := x.Readlink(e.Ino)
				if headerlessRemoteLinks && err != nil {
					if !errors.Is(err, partinfo.ErrCorrupt) {
						t.Errorf("%s: readlink of a headerless remote block: %v, want ErrCorrupt", p, err)
					}
					continue
				}
				if err != nil || got != want {
					t.Errorf("%s: readlink %q, %v; want %q", p, got, err, want)
				}
			default:
				want, _ := os.ReadFile(filepath.Join(src, p))
				got := make([]byte, a.Size+10)
				n, _ := x.ReadAt(e.Ino, got, 0)
				if sha256.Sum256(got[:n]) != sha256.Sum256(want) {
					t.Errorf("%s: content differs (%d bytes read, want %d)", p, n, len(want))
				}
			}
		}
	}
	walk("", x.Root())
	if count < 350 {
		t.Errorf("walked %d entries, want 350+", count)
	}
}

package ntfs_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
	"github.com/cairnbackup/cairn/partinfo/ntfs"
)

const imgSize = 256 << 20

// fillNTFS makes an NTFS image with mkntfs and fills it through a real
// ntfs-3g FUSE mount: the source tree, hard links, a sparse file, a
// symlink and a compressed file. It returns the image path.
func fillNTFS(t *testing.T, src string) string {
	t.Helper()
	testutil.RequireTools(t, "mkntfs", "ntfs-3g", "umount")
	testutil.RequireFUSE(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "ntfs.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fixture.Image(t, img, imgSize)
	fixture.Run(t, nil, "mkntfs", "-F", "-Q", "-q", "-L", "CAIRNNTFS", img)
	fixture.Run(t, nil, "ntfs-3g", "-o", "compression", img, mnt)
	mounted := true
	unmount := func() {
		if mounted {
			fixture.Run(t, nil, "umount", mnt)
			mounted = false
		}
	}
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	fixture.Run(t, nil, "cp", "-a", src+"/.", mnt+"/")
	// Hard links: a second and third name in other directories.
	must(t, os.Link(filepath.Join(mnt, "lower.txt"), filepath.Join(mnt, "sub", "hardlink-to-lower.txt")))
	must(t, os.Link(filepath.Join(mnt, "lower.txt"), filepath.Join(mnt, "many", "d01", "another name.txt")))
	// A sparse file: 40 MiB with data at 1 MiB and at 30 MiB.
	sp, err := os.Create(filepath.Join(mnt, "sparse.bin"))
	must(t, err)
	_, err = sp.WriteAt(bytes.Repeat([]byte("A"), 65536), 1<<20)
	must(t, err)
	_, err = sp.WriteAt(bytes.Repeat([]byte("B"), 4096), 30<<20)
	must(t, err)
	must(t, sp.Truncate(40<<20))
	must(t, sp.Close())
	must(t, os.Symlink("lower.txt", filepath.Join(mnt, "link-to-lower")))
	must(t, os.Symlink("sub/empty-in-sub", filepath.Join(mnt, "link-into-sub")))
	// A compressed directory: files created in it are LZNT1-compressed.
	must(t, os.Mkdir(filepath.Join(mnt, "compressed"), 0o755))
	must(t, unix.Setxattr(filepath.Join(mnt, "compressed"), "system.ntfs_attrib_be", []byte{0, 0, 0x08, 0}, 0))
	must(t, os.WriteFile(filepath.Join(mnt, "compressed", "text.txt"), compressible(), 0o644))
	attrs := make([]byte, 4)
	_, err = unix.Getxattr(filepath.Join(mnt, "compressed", "text.txt"), "system.ntfs_attrib_be", attrs)
	must(t, err)
	if attrs[2]&0x08 == 0 {
		t.Fatalf("compressed/text.txt is not compressed on disk (attributes % x)", attrs)
	}
	unmount()
	return img
}

func compressible() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 300_000; i++ {
		b.WriteString("cairn keeps every backup as a recovery point ")
		b.WriteByte(byte('0' + i%10))
	}
	return b.Bytes()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openNTFS(t *testing.T, img string) (*os.File, partinfo.Filesystem) {
	t.Helper()
	f, err := os.Open(img)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	v, err := ntfs.Open(f, 0, imgSize)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return f, partinfo.Safe(v, "ntfs")
}

func TestNTFSMatchesSource(t *testing.T) {
	src := t.TempDir()
	files := fixture.Tree(t, src, fixture.Spec{ManyFiles: 3000, BigDir: 2000, Depth: 40, BigFile: 64 << 20, Seed: 5})
	img := fillNTFS(t, src)
	_, v := openNTFS(t, img)
	info := v.Info()
	if info.Type != "ntfs" || info.Label != "CAIRNNTFS" || info.UUID == "" {
		t.Errorf("info %+v", info)
	}
	// The tree holds over 64 MiB; ntfsinfo's free-cluster count must agree.
	if info.Used < 64<<20 || info.Free <= 0 || info.Used+info.Free != info.Size {
		t.Errorf("used %d free %d size %d", info.Used, info.Free, info.Size)
	}
	if out := fixture.Run(t, nil, "ntfsinfo", "-m", img); !strings.Contains(out, fmt.Sprintf("Free Clusters: %d ", info.Free/int64(info.BlockSize))) {
		t.Errorf("free clusters %d, ntfsinfo says:\n%s", info.Free/int64(info.BlockSize), grepLine(out, "Free Clusters"))
	}
	fsys := partinfo.AsFS(v)
	// NTFS keeps 100 ns ticks.
	if n := fixture.Compare(t, fsys, src, 100*time.Nanosecond); n != len(files) {
		t.Errorf("compared %d files, source has %d", n, len(files))
	}
	t.Run("metadata files hidden", func(t *testing.T) {
		ents, err := fs.ReadDir(fsys, ".")
		must(t, err)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "$") {
				t.Errorf("root lists NTFS metadata file %q", e.Name())
			}
		}
	})
	t.Run("big directory", func(t *testing.T) {
		ents, err := fs.ReadDir(fsys, "bigdir")
		must(t, err)
		if len(ents) != 2000 {
			t.Errorf("bigdir lists %d entries, want 2000", len(ents))
		}
	})
	t.Run("hard links keep every name", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(src, "lower.txt"))
		must(t, err)
		var inos []uint64
		for _, p := range []string{"lower.txt", "sub/hardlink-to-lower.txt", "many/d01/another name.txt"} {
			got, err := fs.ReadFile(fsys, p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: content differs", p)
			}
			st, err := fs.Stat(fsys, p)
			must(t, err)
			a := st.Sys().(partinfo.Attr)
			inos = append(inos, a.Ino)
			if a.Nlink != 3 {
				t.Errorf("%s: nlink %d, want 3", p, a.Nlink)
			}
		}
		if len(inos) == 3 && (inos[0] != inos[1] || inos[1] != inos[2]) {
			t.Errorf("hard links have different inodes %v", inos)
		}
	})
	t.Run("sparse file", func(t *testing.T) {
		f, err := fsys.Open("sparse.bin")
		must(t, err)
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		must(t, err)
		wantBuf := make([]byte, 40<<20)
		copy(wantBuf[1<<20:], bytes.Repeat([]byte("A"), 65536))
		copy(wantBuf[30<<20:], bytes.Repeat([]byte("B"), 4096))
		if n != 40<<20 || !bytes.Equal(h.Sum(nil), sha256Sum(wantBuf)) {
			t.Errorf("sparse.bin: %d bytes, content differs=%v", n, !bytes.Equal(h.Sum(nil), sha256Sum(wantBuf)))
		}
		ino, err := lookupPath(v, "sparse.bin")
		must(t, err)
		d, err := v.SeekData(ino, 0)
		must(t, err)
		if d > 1<<20 || d == 0 {
			t.Errorf("first data at %d, want within the 1 MiB hole's end", d)
		}
		h0, err := v.SeekHole(ino, 0)
		must(t, err)
		if h0 != 0 {
			t.Errorf("first hole at %d, want 0", h0)
		}
		hole, err := v.SeekHole(ino, d)
		must(t, err)
		if hole <= d || hole > 2<<20 {
			t.Errorf("hole after first data at %d, want in (%d, 2 MiB]", hole, d)
		}
		d2, err := v.SeekData(ino, hole)
		must(t, err)
		if d2 > 30<<20 || d2 < 29<<20 {
			t.Errorf("second data at %d, want near 30 MiB", d2)
		}
		if _, err := v.SeekData(ino, 39<<20); !errors.Is(err, partinfo.ErrNoData) {
			t.Errorf("SeekData in the tail hole: %v, want ErrNoData", err)
		}
	})
	t.Run("symlinks", func(t *testing.T) {
		rl := fsys.(fs.ReadLinkFS)
		target, err := rl.ReadLink("link-to-lower")
		if err != nil || target != "lower.txt" {
			t.Errorf("readlink: %q, %v", target, err)
		}
		st, err := rl.Lstat("link-to-lower")
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("lstat: %v, %v", st, err)
		}
		got, err := fs.ReadFile(fsys, "link-to-lower")
		want, _ := os.ReadFile(filepath.Join(src, "lower.txt"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("read through symlink: %v", err)
		}
	})
	t.Run("compressed file", func(t *testing.T) {
		got, err := fs.ReadFile(fsys, "compressed/text.txt")
		must(t, err)
		if !bytes.Equal(got, compressible()) {
			t.Errorf("compressed file differs (%d bytes)", len(got))
		}
	})
	t.Run("modes", func(t *testing.T) {
		st, err := fs.Stat(fsys, "sub")
		must(t, err)
		if st.Mode() != fs.ModeDir|0o555 {
			t.Errorf("dir mode %v", st.Mode())
		}
		st, err = fs.Stat(fsys, "lower.txt")
		must(t, err)
		if st.Mode() != 0o444 {
			t.Errorf("file mode %v", st.Mode())
		}
	})
}

func lookupPath(v partinfo.Filesystem, p string) (uint64, error) {
	ino := v.Root()
	for _, c := range strings.Split(p, "/") {
		var err error
		if ino, err = v.Lookup(ino, c); err != nil {
			return 0, err
		}
	}
	return ino, nil
}

func grepLine(s, key string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, key) {
			return l
		}
	}
	return "(no " + key + " line)"
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestNTFSCorruptBootSectorIsCleanError(t *testing.T) {
	testutil.RequireTools(t, "mkntfs")
	img := filepath.Join(t.TempDir(), "n.img")
	fixture.Image(t, img, 16<<20)
	fixture.Run(t, nil, "mkntfs", "-F", "-Q", "-q", img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	// Wreck the MFT location and cluster size fields.
	_, err = f.WriteAt(bytes.Repeat([]byte{0xFF}, 40), 11)
	must(t, err)
	if _, err := ntfs.Open(f, 0, 16<<20); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Fatalf("open: %v, want ErrCorrupt", err)
	}
}

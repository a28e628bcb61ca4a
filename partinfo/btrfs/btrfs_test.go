package btrfs

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
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

var shared struct {
	once sync.Once
	img  string
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func sh(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// build makes a btrfs image with mkfs.btrfs --rootdir, then through a
// kernel mount: subvolumes (one nested), a read-only snapshot taken
// before a change, zlib/lzo/zstd-compressed directories with large and
// inline files, sparse and preallocated files, links, modes and owners.
func build(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs", "mount", "umount", "fallocate", "setfacl", "setcap")
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "btrfs-fixture-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		src := filepath.Join(dir, "src")
		fixture.Tree(t, src, fixture.Spec{ManyFiles: 200, BigDir: 300, Depth: 5, BigFile: 3 << 20, Seed: 3})
		os.Symlink("many/d01", filepath.Join(src, "link-to-dir"))
		os.Link(filepath.Join(src, "lower.txt"), filepath.Join(src, "hardlink.txt"))
		os.Chmod(filepath.Join(src, "MixedCase.TXT"), 0o4711)
		os.Lchown(filepath.Join(src, "empty.txt"), 1001, 2002)
		img := filepath.Join(dir, "btrfs.img")
		fixture.Image(t, img, 320<<20)
		// Copied by mkfs.btrfs --rootdir.
		unix.Lsetxattr(filepath.Join(src, "lower.txt"), "user.from-rootdir", []byte("copied by mkfs"), 0)
		sh(t, "mkfs.btrfs", "-q", "-L", "cairn-btrfs", "-r", src, img)
		mnt := filepath.Join(dir, "mnt")
		os.Mkdir(mnt, 0o755)
		sh(t, "mount", "-o", "loop", img, mnt)
		defer exec.Command("umount", mnt).Run()
		text := bytes.Repeat([]byte("compressible line of text for btrfs extents 0123456789\n"), 40000)
		for _, c := range []string{"zlib", "lzo", "zstd"} {
			d := filepath.Join(mnt, "c-"+c)
			os.Mkdir(d, 0o755)
			sh(t, "btrfs", "property", "set", d, "compression", c)
			os.WriteFile(filepath.Join(d, "big.txt"), text, 0o644)
			os.WriteFile(filepath.Join(d, "small.txt"), text[:1500], 0o644)
			os.WriteFile(filepath.Join(d, "tiny.txt"), []byte("x"), 0o600)
		}
		sp, _ := os.Create(filepath.Join(mnt, "sparse.bin"))
		sp.WriteAt([]byte("start"), 0)
		sp.WriteAt(bytes.Repeat([]byte("m"), 10000), 40<<20)
		sp.Truncate(100 << 20)
		sp.Close()
		sh(t, "fallocate", "-l", "3M", filepath.Join(mnt, "prealloc.bin"))
		pa, _ := os.OpenFile(filepath.Join(mnt, "prealloc.bin"), os.O_RDWR, 0)
		pa.WriteAt([]byte("written in the middle"), 1<<20)
		pa.Close()
		syscall.Mkfifo(filepath.Join(mnt, "fifo"), 0o640)
		setXattrs(t, mnt)
		sh(t, "btrfs", "subvolume", "create", filepath.Join(mnt, "home"))
		fixture.Tree(t, filepath.Join(mnt, "home", "user"), fixture.Spec{ManyFiles: 50, Seed: 4})
		sh(t, "btrfs", "subvolume", "create", filepath.Join(mnt, "home", "nested"))
		os.WriteFile(filepath.Join(mnt, "home", "nested", "deep.txt"), []byte("in a nested subvolume\n"), 0o644)
		sh(t, "btrfs", "subvolume", "snapshot", "-r", mnt, filepath.Join(mnt, "snap"))
		os.WriteFile(filepath.Join(mnt, "lower.txt"), []byte("changed after the snapshot\n"), 0o644)
		os.WriteFile(filepath.Join(mnt, "after-snapshot.txt"), []byte("new\n"), 0o644)
		sh(t, "umount", mnt)
		shared.img = img
	})
	if shared.err != nil || shared.img == "" {
		t.Fatalf("btrfs fixture: %v", shared.err)
	}
	return shared.img
}

// setXattrs gives files of the kernel-mounted image extended attributes:
// many names on one file, an empty value, a value of 3,000 bytes, trusted.*
// and security.capability, access and default POSIX ACLs, xattrs on a
// directory, a symlink and a FIFO (trusted.*: user.* is refused there; the snapshot taken later inherits them).
func setXattrs(t *testing.T, mnt string) {
	t.Helper()
	set := func(rel, name string, v []byte) {
		if err := unix.Lsetxattr(filepath.Join(mnt, rel), name, v, 0); err != nil {
			t.Fatalf("setxattr %s %s: %v", rel, name, err)
		}
	}
	for i := range 40 {
		set("lower.txt", fmt.Sprintf("user.attr-%02d", i), []byte(strings.Repeat(fmt.Sprint(i), i)))
	}
	set("empty.txt", "user.big", bytes.Repeat([]byte{0xa5, 0x00, 0x5a}, 1000))
	set("empty.txt", "trusted.overlay.opaque", []byte("y"))
	set("many", "user.dir", []byte("on a directory"))
	set("link-to-dir", "trusted.on-symlink", []byte("symlink"))
	set("fifo", "trusted.fifo", []byte("fifo"))
	sh(t, "setcap", "cap_net_raw+ep", filepath.Join(mnt, "MixedCase.TXT"))
	sh(t, "setfacl", "-m", "u:1001:rw,g:2002:r", filepath.Join(mnt, "hardlink.txt"))
	sh(t, "setfacl", "-d", "-m", "u:1001:rwx", filepath.Join(mnt, "many"))
}

func openImage(t *testing.T, img string) (*FS, []byte) {
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return f, data
}

// TestBtrfsAgainstKernel compares every path of the image as the kernel
// shows it (read-only loop mount) with the reader: type, mode, owner,
// size, times (ns), link targets and content.
func TestBtrfsAgainstKernel(t *testing.T) {
	img := build(t)
	f, _ := openImage(t, img)
	if info := f.Info(); info.Label != "cairn-btrfs" || info.Type != "btrfs" {
		t.Errorf("info %+v", info)
	}
	mnt := t.TempDir()
	sh(t, "mount", "-o", "loop,ro", img, mnt)
	defer exec.Command("umount", mnt).Run()
	gfs := partinfo.AsFS(Safe(f))
	checked, withXattrs := compareTree(t, f, mnt)
	if checked < 1000 {
		t.Errorf("only %d paths checked", checked)
	}
	// Those of setXattrs, twice (the snapshot), and the compression
	// properties.
	if withXattrs < 18 {
		t.Errorf("only %d paths have xattrs", withXattrs)
	}
	// The snapshot shows the content from before the change.
	b, err := fs.ReadFile(gfs, "snap/lower.txt")
	if err != nil || strings.Contains(string(b), "changed") {
		t.Errorf("snapshot: %q %v", b, err)
	}
	if _, err := fs.Stat(gfs, "home/nested/deep.txt"); err != nil {
		t.Errorf("nested subvolume: %v", err)
	}
	// Holes are reported.
	ino, _ := lookupPath(f, "sparse.bin")
	if d, err := f.SeekData(ino, 8192); err != nil || d != 40<<20 {
		t.Errorf("SeekData(sparse, 8192) = %d, %v; want %d", d, err, 40<<20)
	}
	if h, err := f.SeekHole(ino, 0); err != nil || h != 4096 {
		t.Errorf("SeekHole(sparse, 0) = %d, %v", h, err)
	}
}

// xattrsOf renders the reader's xattrs of ino as name=hex lines in order.
func xattrsOf(t *testing.T, f *FS, ino uint64) string {
	xs, err := f.Xattrs(ino)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "%s=%x\n", x.Name, x.Value)
	}
	return b.String()
}

// compareTree compares every path under mnt (the kernel's read-only
// mount of the same filesystem) with the reader: mode, owner and mtime
// (ns), size and content, link targets, directory entries, fifos and
// extended attributes. It returns how many paths it compared and how
// many of them have xattrs.
func compareTree(t *testing.T, f *FS, mnt string) (checked, withXattrs int) {
	t.Helper()
	gfs := partinfo.AsFS(Safe(f))
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, p)
		rel = filepath.ToSlash(rel)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		ino, err := lookupPath(f, rel)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		a, err := f.Stat(ino)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		// The kernel dates the placeholder of a subvolume inside a
		// snapshot when it is first looked up; the reader uses the
		// snapshot root's times.
		placeholder := st.Ino == 2
		if rel != "." {
			if got, want := uint32(a.Mode.Perm())|modeBits(a.Mode), st.Mode&0o7777; got != want {
				t.Errorf("%s: mode %o, kernel %o", rel, got, want)
			}
			if a.Uid != st.Uid || a.Gid != st.Gid {
				t.Errorf("%s: owner %d:%d, kernel %d:%d", rel, a.Uid, a.Gid, st.Uid, st.Gid)
			}
			if mt := a.Mtime.UnixNano(); mt != st.Mtim.Nano() && !placeholder {
				t.Errorf("%s: mtime %d, kernel %d", rel, mt, st.Mtim.Nano())
			}
		}
		kx := kernelXattrs(t, p)
		if got := xattrsOf(t, f, a.Ino); got != kx {
			t.Errorf("%s: xattrs\n%s\nkernel\n%s", rel, got, kx)
		}
		if strings.Contains(kx, "=") {
			withXattrs++
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			want, _ := os.Readlink(p)
			got, err := f.Readlink(a.Ino)
			if err != nil || got != want {
				t.Errorf("%s: link %q %v, kernel %q", rel, got, err, want)
			}
		case d.Type().IsRegular():
			if a.Size != st.Size {
				t.Errorf("%s: size %d, kernel %d", rel, a.Size, st.Size)
			} else if got, want := sum(gfs.Open(rel)), sum(os.Open(p)); got != want {
				t.Errorf("%s: content differs", rel)
			}
		case d.IsDir():
			want, _ := os.ReadDir(p)
			got, err := fs.ReadDir(gfs, rel)
			if err != nil || len(got) != len(want) {
				t.Errorf("%s: %d entries (%v), kernel %d", rel, len(got), err, len(want))
			}
		case d.Type()&fs.ModeNamedPipe != 0:
			if a.Mode&fs.ModeNamedPipe == 0 {
				t.Errorf("%s: not a fifo: %v", rel, a.Mode)
			}
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return checked, withXattrs
}

// kernelXattrs renders the kernel's xattrs of path (llistxattr order) as
// name=hex lines.
func kernelXattrs(t *testing.T, path string) string {
	buf := make([]byte, 1<<16)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", path, err)
	}
	var b strings.Builder
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 1<<16)
		m, err := unix.Lgetxattr(path, name, v)
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", path, name, err)
		}
		fmt.Fprintf(&b, "%s=%x\n", name, v[:m])
	}
	return b.String()
}

func modeBits(m fs.FileMode) uint32 {
	var b uint32
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func sum(f io.ReadCloser, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func lookupPath(f *FS, p string) (uint64, error) {
	ino := f.Root()
	if p == "." {
		return ino, nil
	}
	for _, n := range strings.Split(p, "/") {
		var err error
		if ino, err = f.Lookup(ino, n); err != nil {
			return 0, err
		}
	}
	return ino, nil
}

// TestBtrfsDataChecksum flips one byte in the data of a file (uncompressed
// and compressed): reading it fails with ErrCorrupt instead of returning
// the damaged bytes.
func TestBtrfsDataChecksum(t *testing.T) {
	img := build(t)
	for _, name := range []string{"big/large.bin", "c-zstd/big.txt"} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			f, data := openImage(t, img)
			ino, err := lookupPath(f, name)
			if err != nil {
				t.Fatal(err)
			}
			in, m, err := f.fileMapOf(ino)
			if err != nil || len(m.extents) == 0 {
				t.Fatalf("%v %d", err, len(m.extents))
			}
			e := m.extents[0]
			pieces, err := f.mapLogical(e.diskAddr, 1)
			if err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(data)
			bad[pieces[0].copies[0].off+100] ^= 0xff
			f2, err := Open(bytes.NewReader(bad), 0, int64(len(bad)))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, min(in.size, 64<<10))
			if _, err := f2.ReadAt(ino, buf, 0); !errors.Is(err, partinfo.ErrCorrupt) {
				t.Errorf("read of a damaged extent: %v, want ErrCorrupt", err)
			}
			// A read that is not sector-aligned (verified through a
			// bounce buffer) fails the same way.
			if _, err := f2.ReadAt(ino, buf[:50], 90); !errors.Is(err, partinfo.ErrCorrupt) {
				t.Errorf("unaligned read of a damaged extent: %v, want ErrCorrupt", err)
			}
			if _, err := f.ReadAt(ino, buf, 0); err != nil {
				t.Errorf("intact image: %v", err)
			}
		})
	}
}

// Safe wraps the reader as fsopen does.
func Safe(f *FS) partinfo.Filesystem { return partinfo.Safe(f, "btrfs") }

// TestBtrfsReadIntoDirtyBuffer reads holes, preallocated ranges, inline
// and regular extents into buffers full of 0xAA, aligned and not, and
// compares with the content written: every byte of the buffer is the
// file's (the reader clears only what no extent writes).
func TestBtrfsReadIntoDirtyBuffer(t *testing.T) {
	img := build(t)
	f, _ := openImage(t, img)
	sparse := make([]byte, 100<<20)
	copy(sparse, "start")
	copy(sparse[40<<20:], bytes.Repeat([]byte("m"), 10000))
	prealloc := make([]byte, 3<<20)
	copy(prealloc[1<<20:], "written in the middle")
	files := map[string][]byte{"sparse.bin": sparse, "prealloc.bin": prealloc, "c-zstd/tiny.txt": []byte("x")}
	reads := []struct{ off, n int64 }{
		{0, 1 << 20}, {0, 3}, {1, 4096}, {4000, 8192}, {1<<20 - 10, 100}, {40<<20 - 4096, 64 << 10},
		{40<<20 + 9990, 5000}, {99 << 20, 2 << 20},
	}
	for name, want := range files {
		ino, err := lookupPath(f, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reads {
			if r.off >= int64(len(want)) {
				continue
			}
			buf := bytes.Repeat([]byte{0xaa}, int(r.n))
			n, err := f.ReadAt(ino, buf, r.off)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("%s at %d: %v", name, r.off, err)
			}
			exp := want[r.off:min(r.off+r.n, int64(len(want)))]
			if n != len(exp) || !bytes.Equal(buf[:n], exp) {
				t.Errorf("%s: %d bytes at %d differ from the content written (n=%d)", name, r.n, r.off, n)
			}
		}
	}
}

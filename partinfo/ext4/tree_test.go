package ext4

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// treeOptions chooses the size of the generated source tree.
type treeOptions struct {
	bigFile    int64 // size of big.bin (random bytes)
	smallFiles int   // files spread over subdirectories
	bigDir     int   // entries in the one large (htree) directory
	fallocate  bool  // add fallocated (unwritten) files; only meaningful on ext4 written by the kernel
}

// buildTree fills dir with the fixture tree the readers are checked on.
func buildTree(t testing.TB, dir string, o treeOptions) {
	t.Helper()
	src := rand.NewChaCha8([32]byte{1, 2, 3})
	rng := rand.New(src)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, data []byte, perm os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, perm))
		must(os.Chmod(p, perm)) // not subject to umask
	}
	random := func(n int64) []byte {
		b := make([]byte, n)
		_, _ = src.Read(b)
		return b
	}

	// Many small files of varied sizes, including empty and tiny (inline) ones.
	for i := 0; i < o.smallFiles; i++ {
		size := rng.Int64N(20000)
		switch i % 7 {
		case 0:
			size = 0
		case 1:
			size = rng.Int64N(60)
		case 2:
			size = 60 + rng.Int64N(100)
		}
		write(fmt.Sprintf("small/d%02d/f%04d", i%30, i), random(size), 0o644)
	}
	// One large directory: the kernel (or mkfs) indexes it as an htree.
	must(os.MkdirAll(filepath.Join(dir, "bigdir"), 0o755))
	for i := 0; i < o.bigDir; i++ {
		name := fmt.Sprintf("entry-with-a-longish-name-%05d", i)
		if i%250 == 0 {
			name = fmt.Sprintf("entrée-ünïcödé-日本語-%05d", i) // high-bit bytes hash differently signed/unsigned
		}
		f, err := os.Create(filepath.Join(dir, "bigdir", name))
		must(err)
		if i%100 == 0 {
			_, err = f.WriteString(fmt.Sprint(i))
			must(err)
		}
		must(f.Close())
	}
	// A deep tree: depth 30.
	deep := "deep"
	for i := 0; i < 30; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", i))
	}
	write(filepath.Join(deep, "bottom.txt"), []byte("at the bottom\n"), 0o600)
	// Long and non-ASCII names.
	write("names/"+strings.Repeat("L", 255), []byte("long name"), 0o644)
	write("names/Grüße-日本語-ñ-€", []byte("unicode"), 0o644)
	write("names/with space & 'quotes'", nil, 0o644)
	// Symlinks: fast (in i_block), slow (in a block), dangling, to a directory.
	must(os.Symlink("../names/Grüße-日本語-ñ-€", filepath.Join(dir, "names", "fastlink")))
	must(os.Symlink(strings.Repeat("slow/", 40)+"target", filepath.Join(dir, "names", "slowlink")))
	must(os.Symlink(strings.Repeat("x", 59), filepath.Join(dir, "names", "link59")))
	must(os.Symlink(strings.Repeat("y", 60), filepath.Join(dir, "names", "link60")))
	must(os.Symlink("/nonexistent/dangling", filepath.Join(dir, "names", "dangling")))
	must(os.Symlink("../deep", filepath.Join(dir, "names", "dirlink")))
	// Hard links across directories.
	write("links/original", []byte("shared content\n"), 0o644)
	must(os.MkdirAll(filepath.Join(dir, "links", "sub"), 0o755))
	must(os.Link(filepath.Join(dir, "links", "original"), filepath.Join(dir, "links", "hardlink")))
	must(os.Link(filepath.Join(dir, "links", "original"), filepath.Join(dir, "links", "sub", "hardlink2")))
	// Modes, owners (including uids above 65535) and old/new times.
	for name, perm := range map[string]os.FileMode{
		"setuid": 0o4755, "setgid": 0o2750, "none": 0, "private": 0o600, "exec": 0o755,
	} {
		write("modes/"+name, []byte(name), perm)
	}
	must(os.MkdirAll(filepath.Join(dir, "modes", "sticky"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "modes", "sticky"), 0o1777))
	must(unix.Chmod(filepath.Join(dir, "modes", "setuid"), 0o4755))
	must(unix.Chmod(filepath.Join(dir, "modes", "setgid"), 0o2750))
	must(os.Lchown(filepath.Join(dir, "modes", "private"), 1000, 1000))
	must(os.Lchown(filepath.Join(dir, "modes", "exec"), 70000, 123456))
	must(os.Lchown(filepath.Join(dir, "names", "fastlink"), 4242, 4343))
	write("times/old", []byte("1990"), 0o644)
	must(os.Chtimes(filepath.Join(dir, "times", "old"), time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)))
	write("times/nanos", []byte("ns"), 0o644)
	must(os.Chtimes(filepath.Join(dir, "times", "nanos"), time.Unix(1234567890, 123456789), time.Unix(1500000000, 987654321)))
	write("times/future", []byte("2100"), 0o644)
	must(os.Chtimes(filepath.Join(dir, "times", "future"), time.Date(2100, 6, 1, 0, 0, 0, 5, time.UTC), time.Date(2100, 6, 1, 0, 0, 0, 5, time.UTC)))
	write("times/pre1970", []byte("1960"), 0o644)
	must(os.Chtimes(filepath.Join(dir, "times", "pre1970"), time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)))
	// Device files and a FIFO.
	must(os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
	must(unix.Mknod(filepath.Join(dir, "dev", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(dir, "dev", "sda1"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 1))))
	must(unix.Mknod(filepath.Join(dir, "dev", "bigminor"), unix.S_IFCHR|0o600, int(unix.Mkdev(300, 70000))))
	must(unix.Mkfifo(filepath.Join(dir, "dev", "fifo"), 0o644))
	// Large data: a big random file, a 5 GiB sparse file, a fragmented file.
	write("data/big.bin", random(o.bigFile), 0o644)
	writeAt(t, filepath.Join(dir, "data", "sparse5g"), 5<<30, map[int64][]byte{
		0: random(1 << 20), 1 << 30: random(4096 + 17), 4<<30 + 12345: random(3 << 20), 5<<30 - 100: random(100),
	})
	frag := map[int64][]byte{}
	for i := int64(0); i < 2100; i += 2 {
		frag[i*4096] = random(4096)
	}
	writeAt(t, filepath.Join(dir, "data", "fragmented"), 2100*4096, frag)
	write("data/empty", nil, 0o644)
	write("data/tiny", []byte("x"), 0o644)
	if o.fallocate {
		p := filepath.Join(dir, "data", "fallocated")
		f, err := os.Create(p)
		must(err)
		must(unix.Fallocate(int(f.Fd()), 0, 0, 8<<20))
		_, err = f.WriteAt(random(10000), 3<<20)
		must(err)
		// Unwritten extents past EOF (KEEP_SIZE) and a wholly unwritten file.
		must(unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 8<<20, 4<<20))
		must(f.Close())
		g, err := os.Create(filepath.Join(dir, "data", "allunwritten"))
		must(err)
		must(unix.Fallocate(int(g.Fd()), 0, 0, 1<<20))
		must(g.Close())
	}
}

// writeAt creates a sparse file of the given size with data at offsets.
func writeAt(t testing.TB, path string, size int64, parts map[int64][]byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range parts {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

package xfs

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

// fixtureSpec sizes the tree that populate writes.
type fixtureSpec struct {
	bigFile   int64 // bytes of random data in big.bin (0: none)
	hugeDir   int   // entries in dirs/huge (node-form directory)
	manyFiles int   // small files spread over files/NNN
}

// populate writes the test tree into the mounted filesystem at root.
func populate(t testing.TB, root string, spec fixtureSpec) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(p string) { must(os.MkdirAll(filepath.Join(root, p), 0o755)) }
	write := func(p string, size int) {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		must(os.WriteFile(filepath.Join(root, p), b, 0o644))
	}

	// Directories in each format: short-form, block, leaf, node.
	for _, n := range []int{3, 50, 500} {
		d := fmt.Sprintf("dirs/d%d", n)
		mkdir(d)
		for i := 0; i < n; i++ {
			write(fmt.Sprintf("%s/entry-%05d", d, i), i%700)
		}
	}
	if spec.hugeDir > 0 {
		mkdir("dirs/huge")
		for i := 0; i < spec.hugeDir; i++ {
			must(os.WriteFile(filepath.Join(root, fmt.Sprintf("dirs/huge/file-with-a-longer-name-%06d", i)), []byte(fmt.Sprint(i)), 0o644))
		}
	}
	for i := 0; i < spec.manyFiles; i++ {
		d := fmt.Sprintf("files/%03d", i/100)
		if i%100 == 0 {
			mkdir(d)
		}
		write(fmt.Sprintf("%s/f%d", d, i), rng.IntN(20000))
	}

	// Deep tree, long and non-ASCII names.
	deep := "deep"
	for i := 0; i < 40; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", i))
	}
	mkdir(deep)
	write(filepath.Join(deep, "bottom.txt"), 100)
	mkdir("names")
	write("names/"+strings.Repeat("n", 255), 10)
	write("names/héllo wörld – 日本語 🎉", 33)
	write("names/.hidden", 1)

	// Symlinks: inline, remote (> inode literal area) and at the 1024 maximum.
	mkdir("links")
	must(os.Symlink("../names/.hidden", filepath.Join(root, "links/short")))
	must(os.Symlink(strings.Repeat("long/", 120), filepath.Join(root, "links/remote600")))
	must(os.Symlink(strings.Repeat("x", 1022)+"y", filepath.Join(root, "links/max1023")))
	must(os.Symlink("/nonexistent/ü", filepath.Join(root, "links/dangling")))

	// Hard links across directories.
	mkdir("hard/a")
	mkdir("hard/b")
	write("hard/a/orig", 5000)
	must(os.Link(filepath.Join(root, "hard/a/orig"), filepath.Join(root, "hard/b/second")))
	must(os.Link(filepath.Join(root, "hard/a/orig"), filepath.Join(root, "hard/third")))

	// Modes, owners, special files.
	mkdir("modes")
	for name, mode := range map[string]os.FileMode{"setuid": 0o4755, "setgid": 0o2711, "private": 0o600, "none": 0} {
		write("modes/"+name, 1)
		must(unix.Chmod(filepath.Join(root, "modes", name), uint32(mode.Perm())|unixSpecial(mode)))
	}
	mkdir("modes/sticky")
	must(unix.Chmod(filepath.Join(root, "modes/sticky"), 0o1777))
	must(os.Lchown(filepath.Join(root, "modes/private"), 1234, 5678))
	must(os.Lchown(filepath.Join(root, "links/short"), 42, 43))
	must(unix.Mkfifo(filepath.Join(root, "modes/fifo"), 0o640))
	must(unix.Mknod(filepath.Join(root, "modes/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(root, "modes/blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(259, 70000))))

	// Empty files and timestamps (1990, and 2040 which needs bigtime).
	mkdir("times")
	must(os.WriteFile(filepath.Join(root, "times/empty"), nil, 0o644))
	write("times/1990", 10)
	write("times/2040", 10)
	write("times/nanos", 10)
	must(os.Chtimes(filepath.Join(root, "times/1990"), time.Time{}, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)))
	must(os.Chtimes(filepath.Join(root, "times/2040"), time.Time{}, time.Date(2040, 6, 1, 12, 0, 0, 0, time.UTC)))
	must(os.Chtimes(filepath.Join(root, "times/nanos"), time.Time{}, time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)))
	must(os.Chtimes(filepath.Join(root, "times"), time.Time{}, time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)))

	populateData(t, root, spec, rng)
}

func unixSpecial(m os.FileMode) uint32 {
	var s uint32
	if m&os.ModeSetuid != 0 {
		s |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		s |= unix.S_ISGID
	}
	return s
}

// populateData writes the large, sparse, fragmented and preallocated files.
func populateData(t testing.TB, root string, spec fixtureSpec, rng *rand.Rand) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkfile := func(p string) *os.File {
		f, err := os.Create(filepath.Join(root, p))
		must(err)
		return f
	}
	chunk := make([]byte, 1<<20)
	fill := func() {
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
	}
	mkdirAll := func(p string) { must(os.MkdirAll(filepath.Join(root, p), 0o755)) }
	mkdirAll("data")

	if spec.bigFile > 0 {
		f := mkfile("data/big.bin")
		for off := int64(0); off < spec.bigFile; off += int64(len(chunk)) {
			fill()
			_, err := f.Write(chunk[:min(int64(len(chunk)), spec.bigFile-off)])
			must(err)
		}
		must(f.Close())
	}

	// 5 GiB sparse file with data islands, one ending mid-block at EOF.
	f := mkfile("data/sparse5g")
	fill()
	for _, off := range []int64{0, 1 << 30, 3<<30 + 12345, 5<<30 - 70000} {
		_, err := f.WriteAt(chunk[:65536], off)
		must(err)
	}
	must(f.Truncate(5<<30 - 1000))
	must(f.Close())

	// 48 MiB written, then every other 4 KiB block punched: 6,144 extents,
	// more than a one-level bmbt under a 512-byte inode's root can index
	// (20 pointers x 251 records), so the B+tree gets two levels.
	f = mkfile("data/fragmented")
	for i := 0; i < 48; i++ {
		fill()
		_, err := f.Write(chunk)
		must(err)
	}
	must(f.Sync())
	for off := int64(4096); off < 48<<20; off += 8192 {
		must(unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, 4096))
	}
	must(f.Close())

	// Preallocated (unwritten) ranges inside and beyond the file size.
	f = mkfile("data/prealloc")
	fill()
	_, err := f.Write(chunk)
	must(err)
	must(unix.Fallocate(int(f.Fd()), 0, 1<<20, 2<<20))                        // unwritten, extends size
	must(unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 3<<20, 1<<20)) // beyond EOF
	_, err = f.WriteAt(chunk[:4096], 2<<20)                                   // data inside the unwritten range
	must(err)
	must(f.Close())
	f = mkfile("data/prealloc-only")
	must(unix.Fallocate(int(f.Fd()), 0, 0, 1<<20))
	must(f.Close())
	unix.Sync()
}

package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestXFSTree builds a v5 filesystem with the kernel, then checks that the
// reader sees exactly what the kernel sees: names, inode numbers (hard
// links), modes, owners, sizes, mtimes, symlink targets, every file's
// sha256, the data/hole map and random reads.
func TestXFSTree(t *testing.T) {
	start := time.Now()
	phase := func(name string) { t.Logf("%-10s done at %v", name, time.Since(start).Round(time.Millisecond)) }
	img := makeImage(t, 1<<30, "-m", "crc=1,bigtime=1", "-L", "cairn-test")
	dir, unmount := mountImage(t, img)
	populate(t, dir, fixtureSpec{bigFile: 256 << 20, hugeDir: 10000, manyFiles: 3000})
	unmount()
	phase("populate")

	dir, unmount = mountImage(t, img, "ro")
	defer unmount()
	want := walkSource(t, dir)
	phase("source")
	x := openImage(t, img)

	compareTree(t, x, want)
	phase("compare")
	checkRandomReads(t, x, dir, want, []string{"data/big.bin", "data/sparse5g", "data/fragmented", "data/prealloc", "dirs/d500/entry-00321"})
	checkFormats(t, x, want)
	checkInfo(t, x, img, dir)
	checkCorruptBmbt(t, x, want["data/fragmented"].Ino)
	checkHashedLookup(t, x, want)
	phase("random")
}

// compareTree walks the reader's tree and compares every path with want.
func compareTree(t *testing.T, x *xfs, want map[string]expected) {
	t.Helper()
	type fileJob struct {
		path string
		ino  uint64
	}
	var files []fileJob
	seen := map[string]bool{}
	var walk func(dirPath string, dirIno uint64, depth int)
	walk = func(dirPath string, dirIno uint64, depth int) {
		if depth > 100 {
			t.Fatalf("%s: directory depth beyond 100", dirPath)
		}
		entries, err := x.ReadDir(dirIno)
		if err != nil {
			t.Fatalf("readdir %s: %v", dirPath, err)
		}
		for _, e := range entries {
			p := path.Join(dirPath, e.Name)
			seen[p] = true
			w, ok := want[p]
			if !ok {
				t.Errorf("%s: reader lists a name the kernel does not", p)
				continue
			}
			ino, err := x.Lookup(dirIno, e.Name)
			if err != nil || ino != e.Ino || ino != w.Ino {
				t.Errorf("%s: lookup = %d, %v; readdir %d; kernel %d", p, ino, err, e.Ino, w.Ino)
			}
			if e.Type != w.Mode.Type() {
				t.Errorf("%s: entry type %v, kernel %v", p, e.Type, w.Mode.Type())
			}
			a, err := x.Stat(e.Ino)
			if err != nil {
				t.Errorf("stat %s: %v", p, err)
				continue
			}
			compareAttr(t, p, a, w)
			switch {
			case w.Mode.IsDir():
				walk(p, e.Ino, depth+1)
			case w.Mode.IsRegular():
				files = append(files, fileJob{p, e.Ino})
			case w.Mode&fs.ModeSymlink != 0:
				if got, err := x.Readlink(e.Ino); err != nil || got != w.Target {
					t.Errorf("readlink %s = %q, %v; want %q", p, got, err, w.Target)
				}
			}
		}
	}
	root, err := x.Stat(x.Root())
	if err != nil {
		t.Fatal(err)
	}
	compareAttr(t, ".", root, want["."])
	seen["."] = true
	walk("", x.Root(), 0)
	for p := range want {
		if !seen[p] {
			t.Errorf("%s: missing from the reader's tree", p)
		}
	}
	if _, err := x.Lookup(x.Root(), "no such name"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lookup of a missing name: %v, want fs.ErrNotExist", err)
	}

	// Hash and map every regular file from four goroutines at once.
	jobs := make(chan fileJob)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 4 {
		wg.Go(func() {
			for j := range jobs {
				segs, merr := dataMap(x, j.ino)
				sum, err := digest(want[j.path].Size, segs, func(p []byte, off int64) (int, error) {
					return x.ReadAt(j.ino, p, off)
				})
				if err == nil && want[j.path].Size >= sparseDigestFrom {
					err = checkHolesZero(x, j.ino, segs, want[j.path].Size)
				}
				mu.Lock()
				w := want[j.path]
				if err != nil || sum != w.SHA256 {
					t.Errorf("%s: sha256 mismatch (err %v)", j.path, err)
				}
				if merr != nil || !slices.Equal(segs, w.Data) {
					t.Errorf("%s: data map %v (err %v), kernel %v", j.path, trimSegs(segs), merr, trimSegs(w.Data))
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range files {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	t.Logf("compared %d paths, %d regular files", len(want), len(files))
}

func trimSegs(s []segment) string {
	if len(s) > 6 {
		return fmt.Sprintf("%v ... (%d segments)", s[:6], len(s))
	}
	return fmt.Sprint(s)
}

func compareAttr(t *testing.T, p string, a partinfo.Attr, w expected) {
	t.Helper()
	if a.Ino != w.Ino || a.Mode != w.Mode || a.Uid != w.Uid || a.Gid != w.Gid || a.Nlink != w.Nlink ||
		a.Size != w.Size || !a.Mtime.Equal(w.Mtime) || (w.Mode&fs.ModeDevice != 0 && a.Rdev != w.Rdev) {
		t.Errorf("%s: attr ino %d mode %v uid %d gid %d nlink %d size %d mtime %v rdev %#x\n  kernel: ino %d mode %v uid %d gid %d nlink %d size %d mtime %v rdev %#x",
			p, a.Ino, a.Mode, a.Uid, a.Gid, a.Nlink, a.Size, a.Mtime, a.Rdev,
			w.Ino, w.Mode, w.Uid, w.Gid, w.Nlink, w.Size, w.Mtime, w.Rdev)
	}
}

// checkHolesZero reads the first and last MiB of every hole.
func checkHolesZero(x *xfs, ino uint64, segs []segment, size int64) error {
	var holes []segment
	prev := int64(0)
	for _, s := range append(segs, segment{size, size}) {
		if s.Start > prev {
			holes = append(holes, segment{prev, s.Start})
		}
		prev = s.End
	}
	buf := make([]byte, 1<<20)
	for _, h := range holes {
		for _, off := range []int64{h.Start, max(h.Start, h.End-int64(len(buf)))} {
			n, err := x.ReadAt(ino, buf[:min(int64(len(buf)), h.End-off)], off)
			if err != nil && err != io.EOF {
				return err
			}
			if slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
				return fmt.Errorf("hole %v holds non-zero bytes near %d", h, off)
			}
		}
	}
	return nil
}

// dataMap lists the data segments through SeekData/SeekHole.
func dataMap(x *xfs, ino uint64) ([]segment, error) {
	var segs []segment
	for off := int64(0); ; {
		start, err := x.SeekData(ino, off)
		if errors.Is(err, partinfo.ErrNoData) {
			return segs, nil
		}
		if err != nil {
			return nil, err
		}
		end, err := x.SeekHole(ino, start)
		if err != nil {
			return nil, err
		}
		if end <= start {
			return nil, fmt.Errorf("hole at %d not after data at %d", end, start)
		}
		segs = append(segs, segment{start, end})
		off = end
	}
}

// checkRandomReads compares random ranges read by the reader and by the kernel.
func checkRandomReads(t *testing.T, x *xfs, dir string, want map[string]expected, paths []string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, p := range paths {
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		size := want[p].Size
		for i := 0; i < 100; i++ {
			off := rng.Int64N(size + 10)
			n := rng.IntN(3 << 20)
			got := make([]byte, n)
			exp := make([]byte, n)
			gn, gerr := x.ReadAt(want[p].Ino, got, off)
			en, eerr := f.ReadAt(exp, off)
			if gn != en || (gerr == nil) != (eerr == nil) || !bytes.Equal(got[:gn], exp[:en]) {
				t.Errorf("%s: ReadAt(%d bytes at %d) = %d, %v; kernel %d, %v", p, n, off, gn, gerr, en, eerr)
			}
		}
		f.Close()
	}
}

// checkFormats proves the fixture exercises each on-disk format.
func checkFormats(t *testing.T, x *xfs, want map[string]expected) {
	t.Helper()
	inodeOf := func(p string) *inode {
		in, err := x.readInode(want[p].Ino)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return in
	}
	// Magic of the first leaf block of a directory (0 when it has none).
	leafMagic := func(p string) uint16 {
		in := inodeOf(p)
		m, err := x.extentMap(in)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		fb := uint64(dirLeafOffset) >> x.geo.blockLog
		buf := make([]byte, x.geo.dirBlkSize)
		if err := x.readFileBlocks(in, m, fb, buf); err != nil {
			return 0
		}
		return binary.BigEndian.Uint16(buf[8:])
	}
	if f := inodeOf("dirs/d3").format; f != fmtLocal {
		t.Errorf("dirs/d3: format %d, want short-form", f)
	}
	if in := inodeOf("dirs/d50"); in.format != fmtExtents || in.size != x.geo.dirBlkSize {
		t.Errorf("dirs/d50: format %d size %d, want one directory block", in.format, in.size)
	}
	if m := leafMagic("dirs/d500"); m != 0x3df1 {
		t.Errorf("dirs/d500: leaf magic %#x, want leaf-form 0x3df1", m)
	}
	if m := leafMagic("dirs/huge"); m != 0x3ebe {
		t.Errorf("dirs/huge: leaf magic %#x, want node-form 0x3ebe", m)
	}
	if in := inodeOf("data/fragmented"); in.format != fmtBtree || in.nextents < 6000 || binary.BigEndian.Uint16(in.fork) < 2 {
		t.Errorf("data/fragmented: format %d with %d extents, want a btree of 6000+ with 2+ levels", in.format, in.nextents)
	}
	if f := inodeOf("links/short").format; f != fmtLocal {
		t.Errorf("links/short: format %d, want local", f)
	}
	if f := inodeOf("links/max1023").format; f != fmtExtents {
		t.Errorf("links/max1023: format %d, want remote extents", f)
	}
	in := inodeOf("data/prealloc")
	m, _ := x.extentMap(in)
	if !slices.ContainsFunc(m, func(e extent) bool { return e.unwritten }) {
		t.Errorf("data/prealloc: no unwritten extent in %v", m)
	}
}

// checkInfo compares Info with blkid and statfs.
func checkInfo(t *testing.T, x *xfs, img, dir string) {
	t.Helper()
	info := x.Info()
	out, err := exec.Command("blkid", "-s", "UUID", "-o", "value", img).Output()
	if err == nil && strings.TrimSpace(string(out)) != info.UUID {
		t.Errorf("UUID %q, blkid %q", info.UUID, strings.TrimSpace(string(out)))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	kernelFree := int64(st.Bfree) * st.Bsize
	if info.Type != "xfs" || info.Label != "cairn-test" || info.BlockSize != 4096 || info.Size != 1<<30 ||
		info.Used+info.Free != info.Size || abs(info.Free-kernelFree) > info.Size/100 {
		t.Errorf("info %+v; statfs free %d", info, kernelFree)
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// checkCorruptBmbt damages one bmbt block of a btree-format file and
// expects reads to fail with ErrCorrupt on a fresh reader.
func checkCorruptBmbt(t *testing.T, x *xfs, ino uint64) {
	t.Helper()
	in, err := x.readInode(ino)
	if err != nil {
		t.Fatal(err)
	}
	maxrecs := (len(in.fork) - 4) / 16
	child, ok := x.geo.fsbToByte(binary.BigEndian.Uint64(in.fork[4+maxrecs*8:]))
	if !ok {
		t.Fatal("bmbt root points outside the filesystem")
	}
	for _, at := range []int64{0, 6, 100} { // magic, record count, a key
		y, err := Open(&patchedImage{base: x.r, patches: map[int64]byte{child + at: 0x20}}, 0, x.geo.partSize)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := y.ReadAt(ino, make([]byte, 4096), 0); !errors.Is(err, partinfo.ErrCorrupt) {
			t.Errorf("read through a bmbt block damaged at +%d: %v, want ErrCorrupt", at, err)
		}
	}
}

// checkHashedLookup looks up every name of the leaf- and node-form
// directories through the hash index and checks no directory got parsed.
func checkHashedLookup(t *testing.T, x *xfs, want map[string]expected) {
	t.Helper()
	y, err := Open(x.r, x.base, x.geo.partSize)
	if err != nil {
		t.Fatal(err)
	}
	hy := y.(*xfs)
	hy.hashLookupFrom = 0
	n := 0
	for p, w := range want {
		dir := path.Dir(p)
		if dir != "dirs/d500" && dir != "dirs/huge" {
			continue
		}
		n++
		if got, err := y.Lookup(want[dir].Ino, path.Base(p)); err != nil || got != w.Ino {
			t.Errorf("%s: hashed lookup = %d, %v; want %d", p, got, err, w.Ino)
		}
	}
	for _, dir := range []string{"dirs/d500", "dirs/huge"} {
		for _, name := range []string{"entry-99999", "file-with-a-longer-name-010000", "x"} {
			if _, err := y.Lookup(want[dir].Ino, name); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s/%s: hashed lookup of a missing name: %v", dir, name, err)
			}
		}
		if _, cached := hy.dirs.Get(want[dir].Ino); cached {
			t.Errorf("%s: was parsed whole instead of searched by hash", dir)
		}
	}
	if n != 10500 {
		t.Errorf("hash-looked-up %d names, want 10500", n)
	}
}

package ext4

import (
	"encoding/binary"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// variant is one mkfs configuration checked against the kernel.
type variant struct {
	name     string
	mkfs     string
	args     []string
	wantType string
	wantBS   int
}

var populateVariants = []variant{
	{"ext4-default", "mkfs.ext4", nil, "ext4", 4096},
	{"ext4-nocsum-32bit", "mkfs.ext4", []string{"-O", "^metadata_csum,^64bit"}, "ext4", 4096},
	{"ext3", "mkfs.ext3", nil, "ext3", 4096},
	{"ext2-128byte-inodes", "mkfs.ext2", []string{"-I", "128"}, "ext2", 4096},
	{"ext4-inline", "mkfs.ext4", []string{"-O", "inline_data"}, "ext4", 4096},
	{"ext4-1k", "mkfs.ext4", []string{"-b", "1024"}, "ext4", 1024},
	{"ext4-metabg-1k", "mkfs.ext4", []string{"-b", "1024", "-O", "meta_bg,^resize_inode,^64bit"}, "ext4", 1024},
}

const testUUID = "0b1e5a7c-3d2f-4e6a-9b8c-7d6e5f4a3b2c"

// TestPopulatedImages builds one source tree, has mkfs -d copy it into each
// variant, and compares every entry read by this package with the kernel's
// loop mount of the same image (and the entry set with the source).
func TestPopulatedImages(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.ext3", "mkfs.ext2", "mount", "umount")
	src := ramDir(t)
	// mkfs -d links names one by one (quadratic), so the 10,000-entry htree
	// directory lives in TestKernelWrittenImages.
	buildTree(t, src, treeOptions{bigFile: 64 << 20, smallFiles: 3000, bigDir: 1500})
	srcPaths := relPaths(t, src)
	for _, v := range populateVariants {
		t.Run(v.name, func(t *testing.T) {
			img := filepath.Join(ramDir(t), "fs.img")
			args := append(slices.Clone(v.args), "-L", "cairn-"+v.mkfs[5:], "-U", testUUID, "-N", "32768", "-d", src)
			makeImage(t, img, 512<<20, v.mkfs, args...)
			f := openImage(t, img)
			checkInfo(t, f, v, 512<<20)
			mnt, _ := loopMount(t, img, true)
			if got := relPaths(t, mnt); !slices.Equal(got, srcPaths) {
				t.Fatalf("image holds %d paths, source %d", len(got), len(srcPaths))
			}
			st := compareWithKernel(t, f, mnt)
			t.Logf("%s: %+v", v.name, st)
			checkCoverage(t, f, st, v, false)
		})
	}
}

// TestKernelWrittenImages lets the kernel's allocator write the tree
// through a loop mount (real extent trees, htree directories, unwritten
// extents) and compares with the kernel's view after a remount.
func TestKernelWrittenImages(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.ext3", "mount", "umount")
	for _, v := range []struct {
		variant
		tree treeOptions
	}{
		{variant{"ext4-kernel", "mkfs.ext4", nil, "ext4", 4096},
			treeOptions{bigFile: 256 << 20, smallFiles: 2000, bigDir: 10000, fallocate: true}},
		{variant{"ext3-kernel", "mkfs.ext3", nil, "ext3", 4096},
			treeOptions{bigFile: 16 << 20, smallFiles: 500, bigDir: 3000}},
		{variant{"ext4-kernel-inline", "mkfs.ext4", []string{"-O", "inline_data"}, "ext4", 4096},
			treeOptions{bigFile: 1 << 20, smallFiles: 300, bigDir: 2000, fallocate: true}},
	} {
		t.Run(v.name, func(t *testing.T) {
			img := filepath.Join(ramDir(t), "fs.img")
			makeImage(t, img, 1<<30, v.mkfs, append(slices.Clone(v.args), "-L", "cairn-"+v.mkfs[5:], "-U", testUUID)...)
			mnt, unmount := loopMount(t, img, false)
			buildTree(t, mnt, v.tree)
			unmount()
			f := openImage(t, img)
			checkInfo(t, f, v.variant, 1<<30)
			mnt, _ = loopMount(t, img, true)
			st := compareWithKernel(t, f, mnt)
			t.Logf("%s: %+v", v.name, st)
			checkCoverage(t, f, st, v.variant, true)
			checkLargeReads(t, img, "data/big.bin")
			if v.tree.bigDir >= 10000 { // large enough for the hashed lookup path
				checkHtreeLookup(t, img, "bigdir")
			}
		})
	}
}

// relPaths lists every path below root (except lost+found), sorted.
func relPaths(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "lost+found" {
			return filepath.SkipDir
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func checkInfo(t *testing.T, f *FS, v variant, size int64) {
	t.Helper()
	info := f.Info()
	if info.Type != v.wantType || info.BlockSize != v.wantBS || info.UUID != testUUID ||
		info.Label != "cairn-"+v.mkfs[5:] || info.Size != size || info.Used <= 0 || info.Used+info.Free != size {
		t.Errorf("Info = %+v", info)
	}
}

// resolve looks up a slash-separated path from the root.
func resolve(t testing.TB, f *FS, path string) uint64 {
	t.Helper()
	ino := f.Root()
	for _, name := range strings.Split(path, "/") {
		var err error
		if ino, err = f.Lookup(ino, name); err != nil {
			t.Fatalf("Lookup %s: %v", path, err)
		}
	}
	return ino
}

// checkCoverage asserts that the fixture really exercised the structures
// it is meant to (so a passing comparison means something).
func checkCoverage(t *testing.T, f *FS, st compareStats, v variant, kernel bool) {
	t.Helper()
	if st.files < 2000 || st.dirs < 60 || st.symlinks < 6 || st.holes < 1000 {
		t.Errorf("comparison covered too little: %+v", st)
	}
	ext4 := v.wantType == "ext4"
	frag, err := f.readInode(resolve(t, f, "data/fragmented"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := f.fileMapOf(frag); err != nil || len(m.runs) < 1024 {
		t.Errorf("fragmented file: %v, want >= 1024 runs", err)
	}
	if got := frag.flags&flagExtents != 0; got != ext4 {
		t.Errorf("fragmented file uses extents = %v, want %v", got, ext4)
	}
	if ext4 && binary.LittleEndian.Uint16(frag.iblock[6:]) == 0 {
		t.Errorf("fragmented file's extent tree has depth 0")
	}
	a, _ := f.Stat(resolve(t, f, "links/original"))
	b, _ := f.Stat(resolve(t, f, "links/sub/hardlink2"))
	if a.Ino != b.Ino || a.Nlink != 3 {
		t.Errorf("hard links: inodes %d and %d, nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if kernel {
		bigdir, _ := f.readInode(resolve(t, f, "bigdir"))
		if bigdir.flags&0x1000 == 0 {
			t.Errorf("bigdir is not an htree directory")
		}
		if ext4 {
			fa, _ := f.readInode(resolve(t, f, "data/fallocated"))
			m, err := f.fileMapOf(fa)
			if err != nil || !slices.ContainsFunc(m.runs, func(r run) bool { return r.unwritten }) {
				t.Errorf("fallocated file has no unwritten extent (%v)", err)
			}
		}
	}
	if slices.Contains(v.args, "inline_data") {
		files, dirs := 0, 0
		for _, d := range must(f.ReadDir(resolve(t, f, "small"))) {
			for _, e := range must(f.ReadDir(d.Ino)) {
				if n, _ := f.readInode(e.Ino); n.flags&flagInlineData != 0 {
					files++
				}
			}
		}
		for _, p := range []string{"links/sub", "dev", "deep/level00/level01"} {
			if n, _ := f.readInode(resolve(t, f, p)); n.flags&flagInlineData != 0 {
				dirs++
			}
		}
		if n, _ := f.readInode(resolve(t, f, "names/slowlink")); n.flags&flagInlineData != 0 {
			files++
		}
		if files < 20 || dirs == 0 {
			t.Errorf("only %d inline-data files and %d inline directories", files, dirs)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

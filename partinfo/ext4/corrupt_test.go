package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// fixSuperblockChecksum recomputes the metadata_csum of a modified superblock.
func fixSuperblockChecksum(img []byte) {
	sb := img[superblockOffset : superblockOffset+superblockSize]
	binary.LittleEndian.PutUint32(sb[0x3FC:], crc32c(^uint32(0), sb[:0x3FC]))
}

func TestCorruptSuperblock(t *testing.T) {
	base, _ := smallImage(t)
	if _, err := Open(bytes.NewReader(base), 0, int64(len(base))); err != nil {
		t.Fatalf("pristine image: %v", err)
	}
	le := binary.LittleEndian
	for _, tc := range []struct {
		name    string
		mutate  func(sb []byte)
		fix     bool // recompute the checksum after mutating
		corrupt bool // the error must wrap ErrCorrupt
		msg     string
	}{
		{"magic", func(sb []byte) { sb[0x38] = 0 }, true, true, "magic"},
		{"checksum", func(sb []byte) { sb[0x10]++ }, false, true, "checksum"},
		{"block size", func(sb []byte) { le.PutUint32(sb[0x18:], 30) }, true, true, "block size"},
		{"blocks per group", func(sb []byte) { le.PutUint32(sb[0x20:], 0) }, true, true, "blocks per group"},
		{"inodes per group", func(sb []byte) { le.PutUint32(sb[0x28:], 0) }, true, true, "inodes per group"},
		{"inode size", func(sb []byte) { le.PutUint16(sb[0x58:], 100) }, true, true, "inode size"},
		{"too many blocks", func(sb []byte) { le.PutUint32(sb[0x4:], 1<<30) }, true, true, "spans"},
		{"inode count", func(sb []byte) { le.PutUint32(sb[0x0:], 1<<31) }, true, true, "inode count"},
		{"encrypt", func(sb []byte) { sb[0x62] |= 1 }, true, false, "encrypt"},
		{"unknown incompat", func(sb []byte) { sb[0x63] |= 0x80 }, true, false, "0x80000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := bytes.Clone(base)
			tc.mutate(img[superblockOffset : superblockOffset+superblockSize])
			if tc.fix {
				fixSuperblockChecksum(img)
			}
			_, err := Open(bytes.NewReader(img), 0, int64(len(img)))
			if err == nil || !strings.Contains(err.Error(), tc.msg) || errors.Is(err, partinfo.ErrCorrupt) != tc.corrupt {
				t.Fatalf("Open = %v; want an error mentioning %q (corrupt=%v)", err, tc.msg, tc.corrupt)
			}
		})
	}
	if Probe(bytes.NewReader(make([]byte, 4096)), 0) || !Probe(bytes.NewReader(base), 0) {
		t.Error("Probe does not tell an ext4 image from zeros")
	}
	if _, err := Open(bytes.NewReader(base[:1500]), 0, 1500); err == nil {
		t.Error("Open of a truncated image succeeded")
	}
	// Without checksums, nonsense geometry must still be caught (no division by zero).
	plain, _ := smallImage(t, "-O", "^metadata_csum")
	binary.LittleEndian.PutUint32(plain[superblockOffset+0x20:], 0)
	if _, err := Open(bytes.NewReader(plain), 0, int64(len(plain))); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("zero blocks per group without checksums: %v", err)
	}
}

// TestCorruptInode flips a byte in one file's inode: its checksum fails
// (ErrCorrupt) while the rest of the filesystem stays readable.
func TestCorruptInode(t *testing.T) {
	img, files := smallImage(t)
	f := mustOpen(t, img)
	victim := resolve(t, f, "hello.txt")
	table, err := f.inodeTable((victim - 1) / uint64(f.sb.inodesPerGroup))
	if err != nil {
		t.Fatal(err)
	}
	off := int64(table)*f.sb.blockSize + int64((victim-1)%uint64(f.sb.inodesPerGroup))*int64(f.sb.inodeSize)
	img[off+0x10] ^= 0x40 // mtime
	f = mustOpen(t, img)
	if _, err := f.Stat(victim); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("Stat of the damaged inode: %v", err)
	}
	if got := readAll(t, f, resolve(t, f, "sub/data.bin")); got != files["sub/data.bin"] {
		t.Error("undamaged file reads wrong after another inode was damaged")
	}
}

// TestSmallImageContents checks contents, Lookup misses, type errors and
// concurrent readers on a small image (inline data on and off).
func TestSmallImageContents(t *testing.T) {
	for _, args := range [][]string{nil, {"-O", "inline_data"}, {"-O", "^metadata_csum,^extent,^64bit"}, {"-O", "bigalloc", "-C", "4096"},
		{"-O", "^metadata_csum,^extent,^64bit,^filetype,^flex_bg,^huge_file,^dir_nlink,^extra_isize"},
		{"-O", "casefold"}, {"-O", "metadata_csum_seed"}, {"-I", "1024"}} {
		img, files := smallImage(t, args...)
		f := mustOpen(t, img)
		var wg sync.WaitGroup
		errs := make(chan string, 1000)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name, want := range files {
					if got := readAll(t, f, resolve(t, f, name)); got != want {
						errs <- name
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for name := range errs {
			t.Errorf("%v: %s reads wrong under concurrency", args, name)
		}
		types := map[string]fs.FileMode{}
		for _, e := range must(f.ReadDir(f.Root())) {
			types[e.Name] = e.Type
		}
		if types["sub"] != fs.ModeDir || types["fast"] != fs.ModeSymlink || types["hello.txt"] != 0 {
			t.Errorf("%v: ReadDir types %v", args, types)
		}
		data := resolve(t, f, "sub/data.bin")
		size := int64(len(files["sub/data.bin"]))
		if pos, err := f.SeekData(data, 10); err != nil || pos != 10 {
			t.Errorf("%v: SeekData(10) = %d, %v", args, pos, err)
		}
		if pos, err := f.SeekHole(data, 10); err != nil || pos != size {
			t.Errorf("%v: SeekHole(10) = %d, %v; want the size %d", args, pos, err, size)
		}
		for _, seek := range []func(uint64, int64) (int64, error){f.SeekData, f.SeekHole} {
			if _, err := seek(data, size); !errors.Is(err, partinfo.ErrNoData) {
				t.Errorf("%v: seek at EOF: %v, want ErrNoData", args, err)
			}
		}
		for _, ino := range []uint64{0, 1 << 40} {
			if _, err := f.Stat(ino); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%v: Stat(%d) = %v", args, ino, err)
			}
		}
		if _, err := f.Lookup(f.Root(), "missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%v: Lookup of a missing name: %v", args, err)
		}
		if _, err := f.ReadDir(resolve(t, f, "hello.txt")); !errors.Is(err, partinfo.ErrNotDir) {
			t.Errorf("%v: ReadDir of a file: %v", args, err)
		}
		if _, err := f.ReadAt(resolve(t, f, "sub"), make([]byte, 1), 0); !errors.Is(err, partinfo.ErrNotRegular) {
			t.Errorf("%v: ReadAt of a directory: %v", args, err)
		}
		if _, err := f.Readlink(resolve(t, f, "hello.txt")); !errors.Is(err, partinfo.ErrNotSymlink) {
			t.Errorf("%v: Readlink of a file: %v", args, err)
		}
		if got, err := f.Readlink(resolve(t, f, "slow")); err != nil || got != strings.Repeat("long/", 30) {
			t.Errorf("%v: slow symlink = %q, %v", args, got, err)
		}
		if up, err := f.Lookup(resolve(t, f, "sub/deeper"), ".."); err != nil || up != resolve(t, f, "sub") {
			t.Errorf("%v: Lookup(..) = %d, %v", args, up, err)
		}
	}
}

func mustOpen(t testing.TB, img []byte) *FS {
	t.Helper()
	fsys, err := Open(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	return fsys.(*FS)
}

func readAll(t testing.TB, f *FS, ino uint64) string {
	t.Helper()
	a, err := f.Stat(ino)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, a.Size+7)
	n, err := f.ReadAt(ino, buf, 0)
	if err != io.EOF {
		t.Errorf("ReadAt past the end: %d, %v (want io.EOF)", n, err)
	}
	return string(buf[:n])
}

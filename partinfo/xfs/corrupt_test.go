package xfs

import (
	"errors"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestCorrupt flips bytes in the superblock, an inode and a directory
// block and expects clean errors wrapping ErrCorrupt (or ErrNotXFS).
func TestCorrupt(t *testing.T) {
	src := smallSource(t)
	v5 := bytesReaderAt(readImage(t, protoImage(t, src, 64<<20)))
	v4 := bytesReaderAt(readImage(t, protoImage(t, src, 64<<20, "-m", "crc=0")))
	size := int64(len(v5))

	open := func(base bytesReaderAt, patches map[int64]byte) (partinfo.Filesystem, error) {
		return Open(&patchedImage{base: base, patches: patches}, 0, int64(len(base)))
	}
	for _, tc := range []struct {
		name    string
		base    bytesReaderAt
		patches map[int64]byte
		want    error
	}{
		{"v5 magic", v5, map[int64]byte{0: 0xff}, ErrNotXFS},
		{"v5 agcount (CRC)", v5, map[int64]byte{91: 0x01}, partinfo.ErrCorrupt},
		{"v5 label (CRC)", v5, map[int64]byte{108: 'x'}, partinfo.ErrCorrupt},
		{"v4 block size", v4, map[int64]byte{6: 0x01}, partinfo.ErrCorrupt},
		{"v4 agcount zero", v4, agcountZero(v4), partinfo.ErrCorrupt},
		{"v4 AG block log", v4, map[int64]byte{124: 0x03}, partinfo.ErrCorrupt},
	} {
		if _, err := open(tc.base, tc.patches); !errors.Is(err, tc.want) {
			t.Errorf("%s: Open error %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Open(v5, 0, size/2); err == nil {
		t.Error("Open of a truncated partition succeeded")
	}

	// Damage inside the filesystem surfaces on first use.
	x, err := Open(v5, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := x.Lookup(x.Root(), "file300k")
	dir, _ := x.Lookup(x.Root(), "d50")
	xi := x.(*xfs)
	inoOff, _ := xi.geo.inoToByte(file)
	din, _ := xi.readInode(dir)
	m, err := xi.extentMap(din)
	if err != nil || len(m) == 0 {
		t.Fatalf("d50 extent map %v, %v", m, err)
	}
	rootOff, _ := xi.geo.inoToByte(x.Root())

	y, err := open(v5, map[int64]byte{inoOff + 60: 0x10, m[0].phys + 200: 0x01})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := y.Stat(file); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("stat of a damaged inode: %v, want ErrCorrupt", err)
	}
	if _, err := y.ReadAt(file, make([]byte, 10), 0); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("read of a damaged inode: %v, want ErrCorrupt", err)
	}
	if _, err := y.ReadDir(dir); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("readdir of a damaged block: %v, want ErrCorrupt", err)
	}
	if _, err := y.Lookup(dir, "entry-0001"); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("lookup in a damaged block: %v, want ErrCorrupt", err)
	}
	if _, err := open(v5, map[int64]byte{rootOff + 2: 0x40}); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("open with a damaged root inode: %v, want ErrCorrupt", err)
	}
	if _, err := y.Stat(1 << 60); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("stat of an inode number beyond the filesystem: %v, want ErrCorrupt", err)
	}
	if _, err := y.ReadDir(file); !errors.Is(err, partinfo.ErrNotDir) && !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("readdir of a file: %v", err)
	}
	if _, err := x.ReadDir(file); !errors.Is(err, partinfo.ErrNotDir) {
		t.Errorf("readdir of a file: %v, want ErrNotDir", err)
	}
	if _, err := x.Readlink(file); !errors.Is(err, partinfo.ErrNotSymlink) {
		t.Errorf("readlink of a file: %v, want ErrNotSymlink", err)
	}
	if _, err := x.ReadAt(dir, make([]byte, 1), 0); !errors.Is(err, partinfo.ErrNotRegular) {
		t.Errorf("read of a directory: %v, want ErrNotRegular", err)
	}
}

// agcountZero returns the patch that turns sb_agcount into zero.
func agcountZero(img bytesReaderAt) map[int64]byte {
	p := map[int64]byte{}
	for i := int64(88); i < 92; i++ {
		if img[i] != 0 {
			p[i] = img[i]
		}
	}
	return p
}

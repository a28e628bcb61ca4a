package xfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestExtentsGiveTheFileBytes: the bytes at a file's extents, read
// straight from the disk the filesystem sits on (at a partition offset),
// are the file's bytes: holes are not covered, unwritten extents say so.
func TestExtentsGiveTheFileBytes(t *testing.T) {
	img := makeImage(t, 64<<20)
	mnt, unmount := mountImage(t, img)
	files := map[string][]byte{
		"small":      []byte("hello\n"),
		"big":        bytes.Repeat([]byte("0123456789abcdef"), 40000),
		"dir/sparse": nil,
		"prealloc":   nil,
	}
	for name, b := range files {
		p := filepath.Join(mnt, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// sparse: data, a 1 MiB hole, data; prealloc: unwritten then data.
	sparse := make([]byte, 1<<20+8192)
	copy(sparse, "start")
	copy(sparse[1<<20+4096:], "after the hole")
	f, err := os.OpenFile(filepath.Join(mnt, "dir/sparse"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(sparse[:4096], 0)
	f.WriteAt(sparse[1<<20+4096:], 1<<20+4096)
	f.Close()
	files["dir/sparse"] = sparse
	pre := make([]byte, 256<<10)
	copy(pre[128<<10:], "written")
	f, err = os.OpenFile(filepath.Join(mnt, "prealloc"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(len(pre))); err != nil {
		t.Fatal(err)
	}
	f.WriteAt(pre[128<<10:132<<10], 128<<10)
	f.Close()
	files["prealloc"] = pre
	unmount()

	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	const off = 3 << 20
	disk := append(make([]byte, off), raw...)
	fsys, err := Open(bytes.NewReader(disk), off, int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	sawUnwritten, sawHole := false, false
	for name, content := range files {
		ino := fsys.Root()
		dir, base := filepath.Split(name)
		if dir != "" {
			if ino, err = fsys.Lookup(ino, filepath.Clean(dir)); err != nil {
				t.Fatal(err)
			}
		}
		if ino, err = fsys.Lookup(ino, base); err != nil {
			t.Fatal(err)
		}
		ext, err := partinfo.Extents(fsys, ino)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := make([]byte, len(content))
		covered := int64(0)
		for _, e := range ext {
			if e.Physical < off {
				t.Fatalf("%s: extent %+v before the partition", name, e)
			}
			covered += e.Length
			if e.Unwritten {
				sawUnwritten = true
				continue
			}
			if e.Logical < int64(len(got)) {
				copy(got[e.Logical:], disk[e.Physical:e.Physical+e.Length])
			}
		}
		if covered < int64(len(content)) {
			sawHole = true
		}
		if !bytes.Equal(got, content) {
			t.Errorf("%s: the bytes at its extents are not the file's", name)
		}
	}
	if !sawUnwritten || !sawHole {
		t.Errorf("fixture did not make an unwritten extent (%v) and a hole (%v)", sawUnwritten, sawHole)
	}
}

// TestExtentsUnderAReplayedLog: a crashed XFS (its log replayed in
// memory): a file whose blocks the log does not hold has its extents,
// and its bytes are there on disk; a log sector over its data takes them
// away.
func TestExtentsUnderAReplayedLog(t *testing.T) {
	img := crashedXFS(t, 64<<20, 50)
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	x := openImage(t, img)
	if x.log == nil {
		t.Fatal("the log was not replayed: the fixture did not work")
	}
	dir, err := x.Lookup(x.Root(), "new")
	if err != nil {
		t.Fatal(err)
	}
	ino, err := x.Lookup(dir, "data.bin")
	if err != nil {
		t.Fatal(err)
	}
	ext, err := x.Extents(ino)
	if err != nil {
		t.Fatalf("extents of new/data.bin: %v", err)
	}
	want := []byte(strings.Repeat("0123456789abcdef", 70000))
	got := make([]byte, len(want))
	for _, e := range ext {
		if e.Logical < int64(len(got)) {
			copy(got[e.Logical:], raw[e.Physical:e.Physical+e.Length])
		}
	}
	if !bytes.Equal(got, want) {
		t.Error("the on-disk bytes at new/data.bin's extents are not its bytes")
	}
	s := ext[0].Physical / bbSize
	x.log.sectors[s] = make([]byte, bbSize)
	x.log.sorted = append(x.log.sorted, s)
	slices.Sort(x.log.sorted)
	if _, err := x.Extents(ino); !errors.Is(err, partinfo.ErrNoExtents) {
		t.Errorf("a log sector over the data: %v, want ErrNoExtents", err)
	}
}

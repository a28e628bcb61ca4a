package ext4

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
	"golang.org/x/sys/unix"
)

// compareStats counts what a comparison covered.
type compareStats struct {
	entries, files, dirs, symlinks, holes int
	bytes                                 int64
}

// compareWithKernel walks the kernel's mount of the image and checks that
// the reader agrees on every entry: inode number, attributes, directory
// listing, symlink target, data/hole map and file bytes.
func compareWithKernel(t *testing.T, f *FS, mnt string) (st compareStats) {
	t.Helper()
	inos := map[string]uint64{".": f.Root()}
	err := filepath.WalkDir(mnt, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, path)
		var ino uint64
		if rel == "." {
			ino = f.Root()
		} else {
			parent := inos[filepath.Dir(rel)]
			ino, err = f.Lookup(parent, filepath.Base(rel))
			if err != nil {
				t.Errorf("Lookup %s: %v", rel, err)
				return nil
			}
		}
		st.entries++
		if de.IsDir() {
			inos[rel] = ino
		}
		compareEntry(t, f, path, rel, ino, &st)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func timespec(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

func compareEntry(t *testing.T, f *FS, path, rel string, ino uint64, st *compareStats) {
	t.Helper()
	var ks unix.Stat_t
	if err := unix.Lstat(path, &ks); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.Stat(ino)
	if err != nil {
		t.Errorf("Stat %s: %v", rel, err)
		return
	}
	want := partinfo.Attr{
		Ino: ks.Ino, Mode: fi.Mode(), Uid: ks.Uid, Gid: ks.Gid, Nlink: uint32(ks.Nlink),
		Size: ks.Size, Blocks: ks.Blocks, Atime: timespec(ks.Atim), Mtime: timespec(ks.Mtim),
		Ctime: timespec(ks.Ctim), Rdev: uint32(ks.Rdev),
	}
	if !a.Atime.Equal(want.Atime) || !a.Mtime.Equal(want.Mtime) || !a.Ctime.Equal(want.Ctime) {
		t.Errorf("%s: times a/m/c %v %v %v, kernel %v %v %v", rel, a.Atime, a.Mtime, a.Ctime, want.Atime, want.Mtime, want.Ctime)
	}
	a.Atime, a.Mtime, a.Ctime = want.Atime, want.Mtime, want.Ctime
	if a != want {
		t.Errorf("%s: attr\n got %+v\nwant %+v", rel, a, want)
	}
	switch {
	case fi.IsDir():
		st.dirs++
		compareDir(t, f, path, rel, ino)
	case fi.Mode()&fs.ModeSymlink != 0:
		st.symlinks++
		got, err := f.Readlink(ino)
		want, _ := os.Readlink(path)
		if err != nil || got != want {
			t.Errorf("%s: Readlink %q, %v; kernel %q", rel, got, err, want)
		}
	case fi.Mode().IsRegular():
		st.files++
		compareFile(t, f, path, rel, ino, ks.Size, st)
	}
}

func compareDir(t *testing.T, f *FS, path, rel string, ino uint64) {
	t.Helper()
	got, err := f.ReadDir(ino)
	if err != nil {
		t.Errorf("ReadDir %s: %v", rel, err)
		return
	}
	kernel, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b partinfo.DirEntry) int {
		return bytes.Compare([]byte(a.Name), []byte(b.Name))
	})
	if len(got) != len(kernel) {
		t.Errorf("%s: ReadDir has %d entries, kernel %d", rel, len(got), len(kernel))
		return
	}
	for i, k := range kernel {
		if got[i].Name != k.Name() || got[i].Type != k.Type() {
			t.Errorf("%s: entry %d is %q %v, kernel %q %v", rel, i, got[i].Name, got[i].Type, k.Name(), k.Type())
			return
		}
	}
}

// compareFile checks the data/hole map against the kernel's lseek (before
// the kernel reads the file: cached pages would turn unwritten extents into
// data), then the bytes of every data region, zeros in holes, and random
// unaligned reads.
func compareFile(t *testing.T, f *FS, path, rel string, ino uint64, size int64, st *compareStats) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	type region struct{ start, end int64 }
	var data []region
	for pos, i := int64(0), 0; pos < size && i < 10000; i++ {
		kd, kerr := unix.Seek(int(fh.Fd()), pos, unix.SEEK_DATA)
		od, oerr := f.SeekData(ino, pos)
		if kerr != nil {
			if !errors.Is(oerr, partinfo.ErrNoData) {
				t.Errorf("%s: SeekData(%d) = %d, %v; kernel ENXIO", rel, pos, od, oerr)
			}
			break
		}
		if oerr != nil || od != kd {
			t.Errorf("%s: SeekData(%d) = %d, %v; kernel %d", rel, pos, od, oerr, kd)
			return
		}
		kh, _ := unix.Seek(int(fh.Fd()), kd, unix.SEEK_HOLE)
		oh, oerr := f.SeekHole(ino, kd)
		if oerr != nil || oh != kh {
			t.Errorf("%s: SeekHole(%d) = %d, %v; kernel %d", rel, kd, oh, oerr, kh)
			return
		}
		data = append(data, region{kd, kh})
		pos = kh
	}
	// Holes read as zeros (their first and last MiB).
	prev := int64(0)
	for _, r := range append(data, region{size, size}) {
		if r.start > prev {
			st.holes++
			checkZeros(t, f, rel, ino, prev, min(r.start, prev+1<<20))
			checkZeros(t, f, rel, ino, max(prev, r.start-1<<20), r.start)
		}
		prev = r.end
	}
	for _, r := range data {
		k, o := sha256.New(), sha256.New()
		if _, err := io.Copy(k, io.NewSectionReader(fh, r.start, r.end-r.start)); err != nil {
			t.Fatal(err)
		}
		if err := copyFromReader(o, f, ino, r.start, r.end); err != nil {
			t.Errorf("%s: read [%d,%d): %v", rel, r.start, r.end, err)
			return
		}
		if !bytes.Equal(k.Sum(nil), o.Sum(nil)) {
			t.Errorf("%s: bytes [%d,%d) differ from the kernel's", rel, r.start, r.end)
		}
		st.bytes += r.end - r.start
	}
	// Unaligned random reads, and the io.EOF contract at the end.
	rng := rand.New(rand.NewPCG(uint64(ino), uint64(size)))
	reads := 1
	if size > 1<<20 {
		reads = 8
	}
	for i := 0; i < reads && size > 0; i++ {
		off := rng.Int64N(size)
		n := 1 + rng.IntN(int(min(size, 300000)))
		k := make([]byte, n)
		kn, _ := fh.ReadAt(k, off)
		o := make([]byte, n)
		on, oerr := f.ReadAt(ino, o, off)
		if on != kn || !bytes.Equal(k[:kn], o[:on]) || (on < n) != (oerr == io.EOF) {
			t.Errorf("%s: ReadAt(%d, len %d) = %d, %v; kernel %d bytes", rel, off, n, on, oerr, kn)
		}
	}
	if n, err := f.ReadAt(ino, make([]byte, 1), size); n != 0 || err != io.EOF {
		t.Errorf("%s: ReadAt at EOF = %d, %v", rel, n, err)
	}
}

func copyFromReader(w io.Writer, f *FS, ino uint64, start, end int64) error {
	buf := make([]byte, min(1<<20, end-start))
	for pos := start; pos < end; {
		n, err := f.ReadAt(ino, buf[:min(int64(len(buf)), end-pos)], pos)
		w.Write(buf[:n])
		pos += int64(n)
		if err != nil && !(err == io.EOF && pos == end) {
			return err
		}
		if n == 0 {
			return io.ErrNoProgress
		}
	}
	return nil
}

func checkZeros(t *testing.T, f *FS, rel string, ino uint64, start, end int64) {
	t.Helper()
	buf := make([]byte, end-start)
	n, err := f.ReadAt(ino, buf, start)
	if int64(n) != end-start || (err != nil && err != io.EOF) {
		t.Errorf("%s: hole read [%d,%d) = %d, %v", rel, start, end, n, err)
		return
	}
	if !allZero(buf) {
		t.Errorf("%s: hole [%d,%d) is not zeros", rel, start, end)
	}
}

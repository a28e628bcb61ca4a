package ntfs_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
	"github.com/cairnbackup/cairn/partinfo/ntfs"
)

// smallNTFS builds a 2 MiB NTFS image with mkntfs and copies a resident
// and a non-resident file into it with ntfscp (no mount needed).
func smallNTFS(f *testing.F) []byte {
	f.Helper()
	return buildSmallNTFS(f)
}

func buildSmallNTFS(f testing.TB) []byte {
	f.Helper()
	testutil.RequireTools(f, "mkntfs", "ntfscp")
	dir := f.TempDir()
	img := filepath.Join(dir, "n.img")
	fixture.Image(f, img, 2<<20)
	fixture.Run(f, nil, "mkntfs", "-F", "-Q", "-q", "-c", "512", img)
	small := filepath.Join(dir, "small.txt")
	big := filepath.Join(dir, "big.bin")
	os.WriteFile(small, []byte("resident data"), 0o644)
	os.WriteFile(big, bytes.Repeat([]byte("nonresident "), 3000), 0o644)
	fixture.Run(f, nil, "ntfscp", img, small, "small.txt")
	fixture.Run(f, nil, "ntfscp", img, big, "Big File.bin")
	b, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// ntfsRef holds, for each file of the seed image, the bytes ntfscat
// (ntfs-3g, the reference reader) returns, computed once.
type ntfsRef struct {
	seed    []byte
	mftOff  int64
	recSize int64
	files   map[string]ntfsRefFile
}

type ntfsRefFile struct {
	ino  uint64
	data []byte
}

func ntfsReference(f *testing.F, seed []byte) ntfsRef {
	f.Helper()
	testutil.RequireTools(f, "ntfscat")
	path := filepath.Join(f.TempDir(), "seed.img")
	if err := os.WriteFile(path, seed, 0o644); err != nil {
		f.Fatal(err)
	}
	v, err := ntfs.Open(bytes.NewReader(seed), 0, int64(len(seed)))
	if err != nil {
		f.Fatal(err)
	}
	cluster := int64(binary.LittleEndian.Uint16(seed[0x0B:])) * int64(seed[0x0D])
	ref := ntfsRef{seed: seed, mftOff: int64(binary.LittleEndian.Uint64(seed[0x30:])) * cluster, files: map[string]ntfsRefFile{}}
	if c := int8(seed[0x40]); c < 0 {
		ref.recSize = 1 << -c
	} else {
		ref.recSize = int64(c) * cluster
	}
	for _, name := range []string{"small.txt", "Big File.bin"} {
		out, err := exec.Command("ntfscat", path, "/"+name).Output()
		if err != nil {
			f.Fatalf("ntfscat %s: %v", name, err)
		}
		ino, err := v.Lookup(v.Root(), name)
		if err != nil {
			f.Fatal(err)
		}
		ref.files[name] = ntfsRefFile{ino: ino, data: out}
	}
	return ref
}

// check compares what v reads with ntfscat's bytes for every file the
// mutation left intact (same boot sector, same $MFT record 0, same
// record of its own, found by name at the same record): a read that
// succeeds there must return exactly the reference bytes.
func (r ntfsRef) check(t testing.TB, v partinfo.Filesystem, img []byte) (compared int) {
	if !bytes.Equal(img[:512], r.seed[:512]) || !bytes.Equal(img[r.mftOff:r.mftOff+r.recSize], r.seed[r.mftOff:r.mftOff+r.recSize]) {
		return 0
	}
	for name, rf := range r.files {
		rec := r.mftOff + int64(rf.ino)*r.recSize
		if !bytes.Equal(img[rec:rec+r.recSize], r.seed[rec:rec+r.recSize]) {
			continue
		}
		if ino, err := v.Lookup(v.Root(), name); err != nil || ino != rf.ino {
			continue
		}
		buf := make([]byte, len(rf.data)+10)
		n, err := v.ReadAt(rf.ino, buf, 0)
		if err != nil && err != io.EOF {
			continue
		}
		if !bytes.Equal(buf[:n], rf.data) {
			t.Fatalf("%s: read %d bytes that differ from ntfscat's %d", name, n, len(rf.data))
		}
		compared++
	}
	return compared
}

// FuzzNTFS opens mutated NTFS images and walks them: no panic, and a
// read that succeeds on a file the mutation left intact returns the
// bytes ntfscat returned for it (differential against ntfs-3g).
func FuzzNTFS(f *testing.F) {
	testutil.RequireTools(f, "mkntfs", "ntfscp")
	seed := smallNTFS(f)
	v, err := ntfs.Open(bytes.NewReader(seed), 0, int64(len(seed)))
	if err != nil {
		f.Fatalf("seed image does not open: %v", err)
	}
	if ino, err := v.Lookup(v.Root(), "Big File.bin"); err != nil {
		f.Fatalf("seed image lacks its file: %v", err)
	} else if a, _ := v.Stat(ino); a.Size != 36000 {
		f.Fatalf("seed file size %d", a.Size)
	}
	ref := ntfsReference(f, seed)
	if n := ref.check(f, v, seed); n != len(ref.files) {
		f.Fatalf("the seed itself compares %d of %d files with ntfscat", n, len(ref.files))
	}
	// The fuzzer mutates a small window, not the 2 MiB image: the boot
	// sector followed by the first MFT records, laid over the seed.
	mftOff := ref.mftOff
	const window = 48 << 10
	f.Add(append(append([]byte(nil), seed[:512]...), seed[mftOff:mftOff+window]...))
	f.Fuzz(func(t *testing.T, patch []byte) {
		img := append([]byte(nil), seed...)
		copy(img[:512], patch)
		if len(patch) > 512 {
			copy(img[mftOff:mftOff+window], patch[512:])
		}
		v, err := ntfs.Open(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			return
		}
		_ = v.Info()
		walk(v, v.Root(), 0)
		ref.check(t, v, img)
	})
}

// walk lists directories and reads files a little way down the tree.
func walk(v partinfo.Filesystem, ino uint64, depth int) {
	ents, err := v.ReadDir(ino)
	if err != nil {
		return
	}
	for i, e := range ents {
		if i > 16 {
			break
		}
		v.Lookup(ino, e.Name)
		walkXattrs(v, e.Ino)
		a, err := v.Stat(e.Ino)
		if err != nil {
			continue
		}
		switch {
		case a.Mode.IsDir() && depth < 2:
			walk(v, e.Ino, depth+1)
		case a.Mode.IsRegular():
			buf := make([]byte, 8192)
			v.ReadAt(e.Ino, buf, 0)
			v.SeekData(e.Ino, 0)
			v.SeekHole(e.Ino, 0)
		default:
			v.Readlink(e.Ino)
		}
	}
}

// walkXattrs reads every attribute of ino, listed and get-only.
func walkXattrs(v partinfo.Filesystem, ino uint64) {
	partinfo.Xattrs(v, ino)
	g, ok := partinfo.XattrGetterOf(v)
	if !ok {
		return
	}
	names, _ := g.XattrNames(ino)
	for _, n := range append(names, ntfs3gXattrNames...) {
		g.Xattr(ino, n)
	}
}

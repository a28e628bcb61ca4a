package fat_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fat"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// smallFAT builds a tiny FAT image with mkfs.vfat and mtools: a long
// name, a subdirectory, an empty file and a multi-cluster file.
func smallFAT(f *testing.F, bits, perCluster string, size int64) []byte {
	f.Helper()
	return buildSmallFAT(f, bits, perCluster, size)
}

func buildSmallFAT(f testing.TB, bits, perCluster string, size int64) []byte {
	f.Helper()
	testutil.RequireTools(f, "mkfs.vfat", "mcopy")
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "Sub Directory"), 0o755)
	os.WriteFile(filepath.Join(src, "A long file name.txt"), bytes.Repeat([]byte("x"), 3000), 0o644)
	os.WriteFile(filepath.Join(src, "empty"), nil, 0o644)
	os.WriteFile(filepath.Join(src, "Sub Directory", "ünïcode.bin"), []byte("data"), 0o644)
	img := filepath.Join(dir, "fat.img")
	fixture.Image(f, img, size)
	fixture.Run(f, nil, "mkfs.vfat", "-F", bits, "-s", perCluster, img)
	fixture.Run(f, []string{"MTOOLS_SKIP_CHECK=1", "TZ=UTC"}, "mcopy", "-s", "-m", "-i", img,
		filepath.Join(src, "A long file name.txt"), filepath.Join(src, "empty"), filepath.Join(src, "Sub Directory"), "::/")
	b, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// exercise walks a filesystem a little, reading every file it meets.
func exercise(v partinfo.Filesystem, ino uint64, depth int) {
	ents, err := v.ReadDir(ino)
	if err != nil {
		return
	}
	for i, e := range ents {
		if i > 16 {
			break
		}
		v.Lookup(ino, e.Name)
		a, err := v.Stat(e.Ino)
		if err != nil {
			continue
		}
		switch {
		case a.Mode.IsDir() && depth < 2:
			exercise(v, e.Ino, depth+1)
		case a.Mode.IsRegular():
			buf := make([]byte, 8192)
			v.ReadAt(e.Ino, buf, 0)
			v.ReadAt(e.Ino, buf, a.Size-100)
			v.SeekData(e.Ino, 0)
			v.SeekHole(e.Ino, 0)
		default:
			v.Readlink(e.Ino)
		}
	}
}

// fatRef is a seed image with the bytes mtools' mcopy (the reference
// reader) returns for each of its files, computed once.
type fatRef struct {
	img   []byte
	g     partinfo.FATGeometry
	files map[string]refFile
}

// refFile is one file of a seed: its directory entry, the clusters its
// data lives in, and the reference bytes.
type refFile struct {
	ino      uint64
	clusters []uint32
	data     []byte
}

// fatReference builds the reference of a seed image with mcopy.
func fatReference(f *testing.F, img []byte) fatRef {
	f.Helper()
	g, err := partinfo.ParseFATBootSector(img[:512])
	if err != nil {
		f.Fatal(err)
	}
	v, err := fat.Open(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.img")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		f.Fatal(err)
	}
	ref := fatRef{img: img, g: g, files: map[string]refFile{}}
	// mcopy stores the non-ASCII name through its own character set:
	// take the name the subdirectory lists.
	sub, err := lookupPath(v, "Sub Directory")
	if err != nil {
		f.Fatal(err)
	}
	ents, err := v.ReadDir(sub)
	if err != nil || len(ents) != 1 {
		f.Fatalf("seed Sub Directory: %v %v", ents, err)
	}
	for i, name := range []string{"A long file name.txt", "empty", "Sub Directory/" + ents[0].Name} {
		// A wildcard copy into an empty directory, so mtools resolves the
		// name in its own character set.
		out := filepath.Join(dir, fmt.Sprint(i))
		if err := os.Mkdir(out, 0o755); err != nil {
			f.Fatal(err)
		}
		glob := "::/" + name
		if i == 2 {
			glob = "::/Sub Directory/*"
		}
		fixture.Run(f, []string{"MTOOLS_SKIP_CHECK=1"}, "mcopy", "-n", "-i", path, glob, out+"/")
		got, err := os.ReadDir(out)
		if err != nil || len(got) != 1 {
			f.Fatalf("mcopy %s gave %v, %v", glob, got, err)
		}
		data, err := os.ReadFile(filepath.Join(out, got[0].Name()))
		if err != nil {
			f.Fatal(err)
		}
		ino, err := lookupPath(v, name)
		if err != nil {
			f.Fatalf("seed lacks %s: %v", name, err)
		}
		rf := refFile{ino: ino, data: data}
		// Follow the FAT12 chain of the seed: the clusters whose bytes
		// must be unchanged for the reference to apply.
		c := uint32(binary.LittleEndian.Uint16(img[ino+26:]))
		for steps := 0; c >= 2 && c < 0xFF8 && steps < 4096; steps++ {
			rf.clusters = append(rf.clusters, c)
			o := g.FATOffset + int64(c) + int64(c)/2
			v := uint32(binary.LittleEndian.Uint16(img[o:]))
			if c&1 == 1 {
				v >>= 4
			}
			c = v & 0xFFF
		}
		ref.files[name] = rf
	}
	return ref
}

func lookupPath(v partinfo.Filesystem, p string) (uint64, error) {
	ino := v.Root()
	for _, c := range strings.Split(p, "/") {
		var err error
		if ino, err = v.Lookup(ino, c); err != nil {
			return 0, err
		}
	}
	return ino, nil
}

// check compares what v reads for each reference file with mcopy's
// bytes, wherever the fuzzed image still holds that file unchanged: the
// same boot sector and FATs, the same directory entry found by name, the
// same data clusters. A read that succeeds there must return exactly the
// reference bytes.
func (r fatRef) check(t testing.TB, v partinfo.Filesystem, img []byte) (compared int) {
	if len(img) != len(r.img) || !bytes.Equal(img[:r.g.RootDirOffset], r.img[:r.g.RootDirOffset]) {
		return 0
	}
	for name, rf := range r.files {
		if !bytes.Equal(img[rf.ino:rf.ino+32], r.img[rf.ino:rf.ino+32]) {
			continue
		}
		same := true
		for _, c := range rf.clusters {
			o := r.g.DataOffset + int64(c-2)*r.g.ClusterSize
			if !bytes.Equal(img[o:o+r.g.ClusterSize], r.img[o:o+r.g.ClusterSize]) {
				same = false
			}
		}
		if ino, err := lookupPath(v, name); !same || err != nil || ino != rf.ino {
			continue
		}
		buf := make([]byte, len(rf.data)+10)
		n, err := v.ReadAt(rf.ino, buf, 0)
		if err != nil && err != io.EOF {
			continue
		}
		if !bytes.Equal(buf[:n], rf.data) {
			t.Fatalf("%s: read %d bytes that differ from mcopy's %d", name, n, len(rf.data))
		}
		compared++
	}
	return compared
}

// FuzzFAT opens mutated FAT images and walks them: no panic, and a read
// that succeeds on a file the mutation left intact returns the bytes
// mcopy returned for it (differential against mtools).
func FuzzFAT(f *testing.F) {
	testutil.RequireTools(f, "mkfs.vfat", "mcopy")
	var refs []fatRef
	for _, spc := range []string{"1", "2"} {
		img := smallFAT(f, "12", spc, int64(128<<10)*int64(len(spc)+len(refs)))
		ref := fatReference(f, img)
		v, err := fat.Open(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			f.Fatal(err)
		}
		if n := ref.check(f, v, img); n != len(ref.files) {
			f.Fatalf("the seed itself compares %d of %d files with mcopy", n, len(ref.files))
		}
		refs = append(refs, ref)
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		v, err := fat.Open(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			return
		}
		_ = v.Info()
		exercise(v, v.Root(), 0)
		for _, r := range refs {
			r.check(t, v, img)
		}
	})
}

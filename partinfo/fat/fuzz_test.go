package fat_test

import (
	"bytes"
	"os"
	"path/filepath"
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

func FuzzFAT(f *testing.F) {
	testutil.RequireTools(f, "mkfs.vfat", "mcopy")
	f.Add(smallFAT(f, "12", "1", 128<<10))
	f.Add(smallFAT(f, "12", "2", 256<<10))
	f.Fuzz(func(t *testing.T, img []byte) {
		v, err := fat.Open(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			return
		}
		_ = v.Info()
		exercise(v, v.Root(), 0)
	})
}

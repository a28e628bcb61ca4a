package fat_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fat"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// fatImage makes a FAT image of the given variant with mkfs.vfat at
// byte offset off of a file of size bytes and copies src into it with
// mtools. It returns the image path.
func fatImage(t *testing.T, bits int, size, off int64, src string, extra ...string) string {
	t.Helper()
	testutil.RequireTools(t, "mkfs.vfat", "mcopy")
	img := filepath.Join(t.TempDir(), fmt.Sprintf("fat%d.img", bits))
	fixture.Image(t, img, size)
	args := []string{"-F", fmt.Sprint(bits), "-n", fmt.Sprintf("CAIRN%d", bits)}
	if off > 0 {
		args = append(args, "--offset", fmt.Sprint(off/512))
	}
	args = append(args, extra...)
	args = append(args, img)
	if off > 0 {
		args = append(args, fmt.Sprint((size-off)/1024))
	}
	fixture.Run(t, nil, "mkfs.vfat", args...)
	if src != "" {
		ents, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		margs := []string{"-s", "-m", "-i", fmt.Sprintf("%s@@%d", img, off)}
		for _, e := range ents {
			margs = append(margs, filepath.Join(src, e.Name()))
		}
		margs = append(margs, "::/")
		fixture.Run(t, []string{"TZ=UTC", "MTOOLS_SKIP_CHECK=1"}, "mcopy", margs...)
	}
	return img
}

func openImage(t *testing.T, img string, off int64) (*os.File, *fat.FS) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	v, err := fat.Open(f, off, st.Size()-off)
	if err != nil {
		t.Fatalf("open %s: %v", img, err)
	}
	return f, v
}

func TestFATVariantsMatchSource(t *testing.T) {
	cases := []struct {
		bits   int
		size   int64
		off    int64
		spec   fixture.Spec
		extras []string
	}{
		{12, 8 << 20, 0, fixture.Spec{ManyFiles: 150, Depth: 6, Seed: 12, EvenMtimes: true, BMPOnly: true}, nil},
		{16, 64 << 20, 0, fixture.Spec{ManyFiles: 800, BigDir: 600, Depth: 20, BigFile: 5 << 20, Seed: 16, EvenMtimes: true, BMPOnly: true}, nil},
		{32, 96 << 20, 1 << 20, fixture.Spec{ManyFiles: 1500, BigDir: 2000, Depth: 30, BigFile: 24 << 20, Seed: 32, EvenMtimes: true, BMPOnly: true}, []string{"-s", "1"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("fat%d", c.bits), func(t *testing.T) {
			src := t.TempDir()
			files := fixture.Tree(t, src, c.spec)
			img := fatImage(t, c.bits, c.size, c.off, src, c.extras...)
			_, v := openImage(t, img, c.off)
			info := v.Info()
			if info.Type != fmt.Sprintf("fat%d", c.bits) {
				t.Fatalf("type %q, want fat%d", info.Type, c.bits)
			}
			if info.Label != fmt.Sprintf("CAIRN%d", c.bits) {
				t.Errorf("label %q", info.Label)
			}
			if info.Used < c.spec.BigFile || info.Free <= 0 || info.Used+info.Free > info.Size {
				t.Errorf("used %d free %d size %d", info.Used, info.Free, info.Size)
			}
			fsys := partinfo.AsFS(partinfo.Safe(v, "fat"))
			if n := fixture.Compare(t, fsys, src, 2*time.Second); n != len(files) {
				t.Errorf("compared %d files, source has %d", n, len(files))
			}
			// The empty file opens and reads as empty (go-diskfs fails here).
			b, err := fs.ReadFile(fsys, "empty.txt")
			if err != nil || len(b) != 0 {
				t.Errorf("empty.txt: %d bytes, %v", len(b), err)
			}
			// Case-insensitive lookup, as FAT behaves.
			if _, err := fs.Stat(fsys, "MIXEDCASE.txt"); err != nil {
				t.Errorf("case-insensitive lookup: %v", err)
			}
			if c.bits == 12 {
				if err := fstest.TestFS(fsys, "lower.txt", "sub/empty-in-sub", "deep/level00/level01/level02/level03/level04/level05/bottom.txt"); err != nil {
					t.Errorf("fstest: %v", err)
				}
			}
		})
	}
}

func TestFATConcurrentReads(t *testing.T) {
	src := t.TempDir()
	fixture.Tree(t, src, fixture.Spec{ManyFiles: 200, Seed: 7, EvenMtimes: true, BMPOnly: true})
	img := fatImage(t, 16, 32<<20, 0, src)
	_, v := openImage(t, img, 0)
	fsys := partinfo.AsFS(v)
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			errs <- fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				want, err := os.ReadFile(filepath.Join(src, p))
				if err != nil {
					return err
				}
				got, err := fs.ReadFile(fsys, p)
				if err != nil {
					return err
				}
				if string(got) != string(want) {
					return fmt.Errorf("%s differs", p)
				}
				return nil
			})
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestFATCorruptBootSectorIsCleanError(t *testing.T) {
	img := fatImage(t, 16, 16<<20, 0, "")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Zero the bytes-per-sector and sectors-per-cluster fields.
	if _, err := f.WriteAt([]byte{0, 0, 0}, 11); err != nil {
		t.Fatal(err)
	}
	_, err = fat.Open(f, 0, 16<<20)
	if !errors.Is(err, partinfo.ErrCorrupt) {
		t.Fatalf("open corrupt boot sector: %v, want ErrCorrupt", err)
	}
}

func TestFATClusterLoopIsDetected(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "loop.bin"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	img := fatImage(t, 16, 16<<20, 0, src, "-s", "4")
	f, v := openImage(t, img, 0)
	ino, err := v.Lookup(v.Root(), "loop.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Point the file's third cluster back at its first: a loop.
	boot := make([]byte, 512)
	f.ReadAt(boot, 0)
	g, err := partinfo.ParseFATBootSector(boot)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 32)
	f.ReadAt(raw, int64(ino))
	first := uint16(raw[26]) | uint16(raw[27])<<8
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// In every FAT copy: a chain that is whole in one copy is read from it.
	for i := int64(0); i < g.NumFATs; i++ {
		w.WriteAt([]byte{byte(first), byte(first >> 8)}, g.FATOffset+i*g.FATSectors*g.BytesPerSector+int64(first+2)*2)
	}
	v2, err := fat.Open(w, 0, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	_, err = v2.ReadAt(ino, buf, 0)
	if !errors.Is(err, partinfo.ErrCorrupt) {
		t.Fatalf("read looping chain: %v, want ErrCorrupt", err)
	}
}

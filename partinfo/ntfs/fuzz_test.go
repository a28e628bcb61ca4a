package ntfs_test

import (
	"bytes"
	"encoding/binary"
	"os"
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
	// The fuzzer mutates a small window, not the 2 MiB image: the boot
	// sector followed by the first MFT records, laid over the seed.
	mftOff := int64(binary.LittleEndian.Uint64(seed[0x30:])) * 512
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

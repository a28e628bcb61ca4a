package xfs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/partinfo"
)

// fuzzImage is a small image plus the offsets of its non-zero blocks,
// where flips hit metadata rather than empty space.
type fuzzImage struct {
	data   bytesReaderAt
	blocks []int64
}

func newFuzzImage(t testing.TB, img string) fuzzImage {
	data := bytesReaderAt(readImage(t, img))
	var blocks []int64
	for off := int64(0); off+4096 <= int64(len(data)); off += 4096 {
		for _, b := range data[off : off+4096] {
			if b != 0 {
				blocks = append(blocks, off)
				break
			}
		}
	}
	return fuzzImage{data: data, blocks: blocks}
}

// fuzzV5Image mounts a small v5 image and writes, besides the small tree,
// a file fragmented into a one-level bmbt and a sparse file.
func fuzzV5Image(t testing.TB) string {
	img := makeImage(t, 48<<20)
	dir, unmount := mountImage(t, img)
	src := smallSource(t)
	run(t, "cp", "-a", src+"/.", dir)
	f, err := os.Create(filepath.Join(dir, "fragmented"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for range 2 {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	f.Sync()
	for off := int64(4096); off < 2<<20; off += 8192 {
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, 4096); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "sparse"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "sparse"), 1<<30); err != nil {
		t.Fatal(err)
	}
	unmount()
	return img
}

// FuzzXFS opens, walks and reads images with flipped bytes: a v5 image
// (CRCs catch most flips) and a v4 image (no CRCs: flips reach every
// parser). The reader must return errors, never panic or run unbounded.
func FuzzXFS(f *testing.F) {
	images := []fuzzImage{newFuzzImage(f, fuzzV5Image(f))}
	images = append(images, newFuzzImage(f, protoImage(f, smallSource(f), 48<<20, "-m", "crc=0")))

	f.Add([]byte{0})
	f.Add([]byte{1})
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 40 {
		seed := []byte{byte(i)}
		for range 1 + i%8 {
			seed = append(seed, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()))
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		im := images[int(in[0])%len(images)]
		patches := map[int64]byte{}
		for p := in[1:]; len(p) >= 5 && len(patches) < 64; p = p[5:] {
			block := im.blocks[(int(p[0])<<8|int(p[1]))%len(im.blocks)]
			at := block + int64(int(p[2])<<8|int(p[3]))%4096
			mask := p[4]
			if mask == 0 {
				mask = 0xff
			}
			patches[at] = mask
		}
		x, err := Open(&patchedImage{base: im.data, patches: patches}, 0, int64(len(im.data)))
		if err != nil {
			return
		}
		if in[0]&2 != 0 {
			x.(*xfs).hashLookupFrom = 0
		}
		if err := fuzzWalk(x); err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzWalk exercises every method over a bounded walk; it fails only on
// results that no image may give (errors are fine).
func fuzzWalk(x partinfo.Filesystem) error {
	_ = x.Info()
	budget := 2000
	buf := make([]byte, 256<<10)
	var walk func(ino uint64, depth int) error
	walk = func(ino uint64, depth int) error {
		entries, err := x.ReadDir(ino)
		if err != nil || depth > 16 {
			return nil
		}
		for _, e := range entries {
			if budget--; budget < 0 {
				return nil
			}
			if got, err := x.Lookup(ino, e.Name); err == nil && got != e.Ino && !hasDuplicate(entries, e.Name) {
				return fmt.Errorf("lookup %q = %d, readdir says %d", e.Name, got, e.Ino)
			}
			a, err := x.Stat(e.Ino)
			if err != nil {
				continue
			}
			if xr, ok := x.(partinfo.XattrReader); ok {
				if xs, err := xr.Xattrs(e.Ino); err == nil {
					for _, a := range xs {
						if a.Name == "" || len(a.Value) > maxAttrValue {
							return fmt.Errorf("inode %d: xattr %q of %d bytes", e.Ino, a.Name, len(a.Value))
						}
					}
				}
			}
			switch {
			case a.Mode.IsDir():
				if err := walk(e.Ino, depth+1); err != nil {
					return err
				}
			case a.Mode.IsRegular():
				for _, off := range []int64{0, a.Size / 2, a.Size - 1} {
					n, err := x.ReadAt(e.Ino, buf, off)
					if n < 0 || n > len(buf) || (err == nil && n != len(buf)) {
						return fmt.Errorf("ReadAt at %d: %d bytes, %v", off, n, err)
					}
				}
				if d, err := x.SeekData(e.Ino, 0); err == nil {
					if h, err := x.SeekHole(e.Ino, d); err == nil && h <= d {
						return fmt.Errorf("hole %d not after data %d", h, d)
					}
				} else if !errors.Is(err, partinfo.ErrNoData) && !errors.Is(err, partinfo.ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
					return fmt.Errorf("SeekData: unexpected error %w", err)
				}
			default:
				_, _ = x.Readlink(e.Ino)
			}
		}
		return nil
	}
	return walk(x.Root(), 0)
}

func hasDuplicate(entries []partinfo.DirEntry, name string) bool {
	n := 0
	for _, e := range entries {
		if e.Name == name {
			n++
		}
	}
	return n > 1
}

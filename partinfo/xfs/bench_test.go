package xfs

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkRead256MiB reads a 256 MiB file through the reader and through
// the kernel's loop mount of the same image, with the page cache dropped
// for the file involved ("cold") and kept ("warm"). Compare the MB/s.
func BenchmarkRead256MiB(b *testing.B) {
	const size = 256 << 20
	img := makeImage(b, 512<<20)
	dir, unmount := mountImage(b, img)
	populateBig(b, filepath.Join(dir, "big.bin"), size)
	unmount()
	dir, unmount = mountImage(b, img, "ro")
	defer unmount()
	x := openImage(b, img)
	ino, err := x.Lookup(x.Root(), "big.bin")
	if err != nil {
		b.Fatal(err)
	}
	imgFile, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer imgFile.Close()
	mounted, err := os.Open(filepath.Join(dir, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	defer mounted.Close()
	drop := func() {
		for _, f := range []*os.File{imgFile, mounted} {
			_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		}
	}
	buf := make([]byte, 1<<20)
	readReader := func(b *testing.B) {
		for off := int64(0); ; off += int64(len(buf)) {
			_, err := x.ReadAt(ino, buf, off)
			if err == io.EOF {
				return
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	readKernel := func(b *testing.B) {
		for off := int64(0); ; off += int64(len(buf)) {
			_, err := mounted.ReadAt(buf, off)
			if err == io.EOF {
				return
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("reader-random-128KiB-warm", func(b *testing.B) {
		b.SetBytes(128 << 10)
		rng := rand.New(rand.NewPCG(7, 8))
		p := make([]byte, 128<<10)
		for b.Loop() {
			if _, err := x.ReadAt(ino, p, rng.Int64N(size-int64(len(p)))); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, bc := range []struct {
		name string
		cold bool
		read func(*testing.B)
	}{
		{"reader-cold", true, readReader},
		{"kernel-cold", true, readKernel},
		{"reader-warm", false, readReader},
		{"kernel-warm", false, readKernel},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if bc.cold {
					b.StopTimer()
					drop()
					b.StartTimer()
				}
				bc.read(b)
			}
		})
	}
}

// populateBig writes size bytes of pseudo-random data to path.
func populateBig(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*31 + i>>8)
	}
	for off := int64(0); off < size; off += int64(len(chunk)) {
		chunk[0]++
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

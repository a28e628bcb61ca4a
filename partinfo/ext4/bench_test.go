package ext4

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"golang.org/x/sys/unix"
)

// BenchmarkRead256MiB reads one 256 MiB file (written by the kernel, on a
// tmpfs-backed image) in 1 MiB requests through this package and through
// the kernel's loop mount, with the mount's page cache warm and dropped.
func BenchmarkRead256MiB(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireTools(b, "mkfs.ext4", "mount", "umount")
	const size = 256 << 20
	img := filepath.Join(ramDir(b), "bench.img")
	makeImage(b, img, 512<<20, "mkfs.ext4")
	mnt, unmount := loopMount(b, img, false)
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(data)
	if err := os.WriteFile(filepath.Join(mnt, "big"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	unmount()
	f := openImage(b, img)
	ino := resolve(b, f, "big")
	mnt, _ = loopMount(b, img, true)
	buf := make([]byte, 1<<20)

	b.Run("cairn", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for off := int64(0); off < size; off += int64(len(buf)) {
				if _, err := f.ReadAt(ino, buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
			}
		}
	})
	kernel := func(b *testing.B, dropCache bool) {
		fh, err := os.Open(filepath.Join(mnt, "big"))
		if err != nil {
			b.Fatal(err)
		}
		defer fh.Close()
		b.SetBytes(size)
		for b.Loop() {
			if dropCache {
				b.StopTimer()
				_ = unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_DONTNEED)
				b.StartTimer()
			}
			for off := int64(0); off < size; off += int64(len(buf)) {
				if _, err := fh.ReadAt(buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("kernel-warm", func(b *testing.B) { kernel(b, false) })
	b.Run("kernel-cold", func(b *testing.B) { kernel(b, true) })
}

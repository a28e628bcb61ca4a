package nbd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// halfSparseImage writes a 1 GiB image whose every other 4 MiB holds data.
func halfSparseImage(b *testing.B) string {
	b.Helper()
	const size, stripe = 1 << 30, 4 << 20
	path := filepath.Join(b.TempDir(), "half-sparse.raw")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("cairn-nbd-bench!"), stripe/16)
	for off := int64(0); off < size; off += 2 * stripe {
		if _, err := f.WriteAt(data, off); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

// BenchmarkRead1GiBHalfSparse reads a 1 GiB half-sparse image over a unix
// socket, from qemu-nbd and from nbdkit, in ReadAt calls of up to 64 MiB:
// "full" reads every byte, "allocated" reads only what AllocatedExtents
// lists, as a backup does. Throughput is per byte of the export. It runs
// only with -bench.
func BenchmarkRead1GiBHalfSparse(b *testing.B) {
	path := halfSparseImage(b)
	servers := []struct {
		name  string
		start func(b *testing.B) *server
	}{
		{"qemu-nbd", func(b *testing.B) *server { return qemuNBD(b, "-r", "-e", "4", "-f", "raw", path) }},
		{"nbdkit", func(b *testing.B) *server { return nbdkit(b, "--read-only", "file", path) }},
	}
	for _, s := range servers {
		for _, mode := range []string{"full", "allocated"} {
			b.Run(s.name+"/"+mode, func(b *testing.B) {
				srv := s.start(b)
				o := testOptions()
				o.Connections = 2
				o.MaxInFlight = 8
				c := dialT(b, srv.uri(""), o)
				buf := make([]byte, 64<<20)
				ctx := context.Background()
				b.SetBytes(c.Size())
				b.ResetTimer()
				for range b.N {
					areas := []Extent{{Length: c.Size()}}
					if mode == "allocated" {
						var err error
						if areas, err = c.AllocatedExtents(ctx); err != nil {
							b.Fatal(err)
						}
					}
					for _, e := range areas {
						for off := e.Offset; off < e.End(); off += int64(len(buf)) {
							if _, err := c.ReadAt(ctx, buf[:min(int64(len(buf)), e.End()-off)], off); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
			})
		}
	}
}

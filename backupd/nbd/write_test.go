package nbd

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWriteNbdkitAndQemuNBD writes a pattern larger than one request at an
// odd offset through nbdkit (structured and simple replies) and qemu-nbd,
// and reads the file back; a read-only export refuses writes.
func TestWriteNbdkitAndQemuNBD(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  func(t testing.TB, path string) *server
	}{
		{"nbdkit", func(t testing.TB, p string) *server { return nbdkit(t, "file", p) }},
		{"nbdkit-simple", func(t testing.TB, p string) *server { return nbdkit(t, "--no-sr", "file", p) }},
		{"qemu-nbd", func(t testing.TB, p string) *server { return qemuNBD(t, "-f", "raw", p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sparseImage(t, testImageSize, testSpans...)
			c := dialT(t, tc.srv(t, path).uri(""), testOptions())
			data := make([]byte, 3*int(c.MaxRequest())+12345)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			off := int64(4096 * 3)
			ctx := context.Background()
			if err := c.WriteAt(ctx, data, off); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[off:off+int64(len(data))], data) {
				t.Fatal("file differs from the bytes written")
			}
			if err := c.WriteAt(ctx, []byte{1}, c.Size()); err == nil {
				t.Fatal("write past the end accepted")
			}
		})
	}
	path := sparseImage(t, testImageSize, testSpans...)
	c := dialT(t, nbdkit(t, "--readonly", "file", path).uri(""), testOptions())
	if err := c.WriteAt(context.Background(), []byte{1}, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to a read-only export: %v, want ErrReadOnly", err)
	}
}

// TestWriteZeroesAllocated: WriteZeroes lets the server punch a hole,
// WriteZeroesAllocated (NBD_CMD_FLAG_NO_HOLE) zeroes the range and keeps
// it allocated, through nbdkit's file plugin and qemu-nbd.
func TestWriteZeroesAllocated(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  func(t testing.TB, path string) *server
	}{
		{"nbdkit", func(t testing.TB, p string) *server { return nbdkit(t, "file", p) }},
		{"qemu-nbd", func(t testing.TB, p string) *server { return qemuNBD(t, "-f", "raw", p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const mib = 1 << 20
			path := sparseImage(t, 4*mib, span{0, 2 * mib})
			c := dialT(t, tc.srv(t, path).uri(""), testOptions())
			ctx := context.Background()
			if err := c.WriteZeroes(ctx, 0, 256<<10); err != nil {
				t.Fatal(err)
			}
			if err := c.WriteZeroesAllocated(ctx, mib, 256<<10); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range [][2]int{{0, 256 << 10}, {mib, mib + 256<<10}} {
				if !bytes.Equal(got[r[0]:r[1]], make([]byte, r[1]-r[0])) {
					t.Fatalf("[%d, %d) does not read as zeros", r[0], r[1])
				}
			}
			if got[256<<10] == 0 && got[256<<10+1] == 0 && got[256<<10+2] == 0 {
				t.Fatal("the data after the zeroed range was changed")
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if d, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA); err != nil || d < 256<<10 {
				t.Errorf("WriteZeroes left [0, 256 KiB) allocated (first data at %d, %v): the server may punch it", d, err)
			}
			if h, err := unix.Seek(int(f.Fd()), mib, unix.SEEK_HOLE); err != nil || h < mib+256<<10 {
				t.Errorf("WriteZeroesAllocated left a hole at %d (%v), want the range allocated", h, err)
			}
		})
	}
}

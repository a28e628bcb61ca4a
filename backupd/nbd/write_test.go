package nbd

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"testing"
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

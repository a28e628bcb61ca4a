package nbd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// layout of the standard test image: data, holes, an unaligned tail.
const testImageSize = 24<<20 + 1536

var testSpans = []span{{0, 1 << 20}, {3 << 20, 5<<20 + 4096}, {16 << 20, 64 << 10}, {24 << 20, 1536}}

func checkWholeRead(t *testing.T, c *Client, path string) {
	t.Helper()
	if c.Size() != testImageSize {
		t.Fatalf("size %d, want %d", c.Size(), testImageSize)
	}
	got := sha256.Sum256(readAll(t, c))
	if got != fileSHA(t, path) {
		t.Fatal("sha256 of the export differs from the source file")
	}
}

func TestReadQemuNBD(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	srv := qemuNBD(t, "-r", "-f", "raw", "-x", "disk0", path)
	c := dialT(t, srv.uri("disk0"), testOptions())
	if !c.StructuredReplies() || !c.ReadOnly() {
		t.Fatalf("structured=%v readonly=%v, want both", c.StructuredReplies(), c.ReadOnly())
	}
	checkWholeRead(t, c, path)
}

func TestReadNbdkitStructuredAndSimple(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	for _, sr := range []bool{true, false} {
		args := []string{"file", path}
		if !sr {
			args = append([]string{"--no-sr"}, args...)
		}
		srv := nbdkit(t, args...)
		c := dialT(t, srv.uri(""), testOptions())
		if c.StructuredReplies() != sr {
			t.Fatalf("structured replies = %v, want %v", c.StructuredReplies(), sr)
		}
		checkWholeRead(t, c, path)
		if !sr {
			_, err := c.BlockStatus(context.Background(), 0, c.Size(), ContextBaseAllocation)
			if !errors.Is(err, ErrContextNotNegotiated) {
				t.Fatalf("block status without structured replies: %v, want ErrContextNotNegotiated", err)
			}
		}
	}
}

// TestReadHolesAreZeros reads holes with a dirty buffer: structured
// OFFSET_HOLE chunks must overwrite it with zeros.
func TestReadHolesAreZeros(t *testing.T) {
	srv := nbdkit(t, "sparse-random", "size=64M", "seed=7", "percent=30")
	c := dialT(t, srv.uri(""), testOptions())
	ctx := context.Background()
	ext, err := c.BlockStatus(ctx, 0, c.Size(), ContextBaseAllocation)
	if err != nil {
		t.Fatal(err)
	}
	holes := 0
	for _, e := range ext {
		buf := bytes.Repeat([]byte{0xee}, int(min(e.Length, 1<<20)))
		if _, err := c.ReadAt(ctx, buf, e.Offset); err != nil {
			t.Fatal(err)
		}
		allZero := !bytes.ContainsFunc(buf, func(r rune) bool { return r != 0 })
		if e.Zero() && !allZero {
			t.Fatalf("extent %+v is zero but read non-zero bytes", e)
		}
		if e.Hole() {
			holes++
		}
	}
	if holes == 0 {
		t.Fatal("sparse-random export reported no holes")
	}
}

func TestReadTailAndEOF(t *testing.T) {
	// nbdkit's file plugin serves the exact size: the export ends 777
	// bytes into a 4 KiB block.
	path := sparseImage(t, 8<<20+777, span{0, 1 << 20}, span{8 << 20, 777})
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := nbdkit(t, "file", path)
	c := dialT(t, srv.uri(""), testOptions())
	ctx := context.Background()

	buf := make([]byte, 4096)
	off := c.Size() - 1000
	n, err := c.ReadAt(ctx, buf, off)
	if n != 1000 || err != io.EOF {
		t.Fatalf("tail read: n=%d err=%v, want 1000, io.EOF", n, err)
	}
	if !bytes.Equal(buf[:n], src[off:]) {
		t.Fatal("tail bytes differ")
	}
	if n, err := c.ReadAt(ctx, buf, c.Size()); n != 0 || err != io.EOF {
		t.Fatalf("read at end: n=%d err=%v", n, err)
	}
	if _, err := c.ReadAt(ctx, buf, -1); err == nil {
		t.Fatal("read at negative offset succeeded")
	}
	// Unaligned reads through the io.ReaderAt adapter.
	r := io.NewSectionReader(c.ReaderAt(ctx), 0, c.Size())
	for _, o := range []int64{1, 4095, 1<<20 - 3, 3<<20 + 17} {
		b := make([]byte, 10000)
		if _, err := r.ReadAt(b, o); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, src[o:o+10000]) {
			t.Fatalf("unaligned read at %d differs", o)
		}
	}
}

func TestContextCancel(t *testing.T) {
	srv := nbdkit(t, "--filter=delay", "memory", "size=16M", "delay-read=2")
	c := dialT(t, srv.uri(""), testOptions())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	buf := make([]byte, 1<<20)
	if _, err := c.ReadAt(ctx, buf, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with expired context: %v, want DeadlineExceeded", err)
	}
}

package source

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// sparseFile writes a 4 MiB file with data at 1 MiB and 3 MiB.
func sparseFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{1 << 20, 3 << 20} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xab}, 64<<10), off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestFileSource(t *testing.T) {
	ctx := context.Background()
	p := sparseFile(t)
	for _, direct := range []bool{false, true} {
		closed := false
		src, err := OpenFile(p, FileOptions{Direct: direct, OnClose: func() error { closed = true; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		if src.Size() != 4<<20 {
			t.Errorf("direct=%v: size %d", direct, src.Size())
		}
		ext, err := src.Allocated(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := blockmapTotal(ext); n >= 4<<20 || n < 128<<10 {
			t.Errorf("direct=%v: allocated %v (%d bytes): the holes were not seen", direct, ext, n)
		}
		buf := make([]byte, 4096)
		if _, err := src.ReadAt(buf, 3<<20); err != nil || buf[0] != 0xab {
			t.Errorf("direct=%v: read %x, %v", direct, buf[0], err)
		}
		if w := src.CopyOptions().Workers; (w == DirectWorkers) != direct {
			t.Errorf("direct=%v: %d workers", direct, w)
		}
		if m := src.Meta(); m["transport"] != "file" || m["source"] != p {
			t.Errorf("meta %v", m)
		}
		if err := src.Close(); err != nil || !closed {
			t.Errorf("close: %v, OnClose ran: %v", err, closed)
		}
	}
	// Size: a disk larger than the file is refused; a smaller one is
	// what is read.
	if _, err := OpenFile(p, FileOptions{Size: 8 << 20}); err == nil || !strings.Contains(err.Error(), "has 4194304 bytes") {
		t.Errorf("a file smaller than the disk: %v", err)
	}
	src, err := OpenFile(p, FileOptions{Size: 2 << 20, Transport: "hotadd"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Size() != 2<<20 || src.Meta()["transport"] != "hotadd" {
		t.Errorf("size %d, meta %v", src.Size(), src.Meta())
	}
}

func TestOpenRefusesWhatIsNoDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec string
		opts Options
		want string
	}{
		{fifo, Options{}, "FIFO"},
		{dir, Options{}, "not a regular file"},
		{sparseFile(t), Options{DirtyBitmap: "b1"}, "a dirty bitmap can be read from NBD sources only"},
		{"nbd+unix:///?socket=" + filepath.Join(dir, "none.sock"), Options{}, "no NBD server socket"},
		{"http://host/x", Options{}, "source http://host/x"},
	} {
		src, err := Open(ctx, tc.spec, tc.opts)
		if err == nil {
			src.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s): %v, want an error with %q", tc.spec, err, tc.want)
		}
	}
	if !IsURI("nbd://h/e") || IsURI("/a/b") || IsURI("dir/x://y") {
		t.Error("IsURI")
	}
}

func blockmapTotal(ext []blockmap.Extent) (n int64) {
	for _, e := range ext {
		n += e.Length
	}
	return n
}

package fusefs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

func TestReadAroundSpan(t *testing.T) {
	ra := newReadAround(64 << 10)
	const size = 1<<20 + 8192 // the last block is short
	cases := []struct {
		off        int64
		n          int
		start, end int64
		ok         bool
	}{
		{off: 8192, n: 4096, start: 0, end: 64 << 10, ok: true},
		{off: 60 << 10, n: 8192, start: 0, end: 128 << 10, ok: true},      // straddles two blocks
		{off: 1 << 20, n: 4096, start: 1 << 20, end: size, ok: true},      // short last block
		{off: 1<<20 + 4096, n: 4096, start: 1 << 20, end: size, ok: true}, // its last page
		{off: 0, n: 64 << 10, ok: false},                                  // a whole block: nothing around
		{off: 0, n: 1 << 20, ok: false},                                   // large reads are left alone
		{off: 100, n: 4096, ok: false},                                    // not page-aligned
		{off: 4096, n: 0, ok: false},
	}
	for _, c := range cases {
		start, end, ok := ra.span(c.off, c.n, size)
		if ok != c.ok || ok && (start != c.start || end != c.end) {
			t.Errorf("span(%d, %d) = %d, %d, %v; want %d, %d, %v", c.off, c.n, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

// patternPoint commits a point of VM "vm" whose disk holds bytes that
// differ in every 4 KiB page.
func patternPoint(t *testing.T, repo *blockmap.Repo, size int64) ([]byte, blockmap.Point) {
	t.Helper()
	ctx := context.Background()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i/4096)
	}
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "disk0", size, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return data, p
}

// TestMountSmallReadsFillTheBlock: a 4 KiB read returns the right bytes
// and leaves the rest of its 64 KiB block in the kernel's page cache, so
// other small reads of that block are answered without a READ request;
// reads elsewhere still reach the mount and are right.
func TestMountSmallReadsFillTheBlock(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{BlockSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	const size = 1<<20 + 8192
	data, p := patternPoint(t, repo, size)
	trace := &requestLog{}
	mnt := t.TempDir()
	srv, err := Mount(ctx, repo, mnt, Options{Logger: slog.New(slog.NewTextHandler(trace, &slog.HandlerOptions{Level: slog.LevelDebug})), Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })

	f, err := os.Open(filepath.Join(mnt, "vm", p.ID, "disks", "disk0.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// No kernel readahead on this file: every READ it sends is the 4 KiB
	// asked for.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	read := func(off int64) {
		t.Helper()
		buf := make([]byte, 4096)
		n, err := f.ReadAt(buf, off)
		if err != nil || n != len(buf) {
			t.Fatalf("read 4 KiB at %d: %d bytes, %v", off, n, err)
		}
		if !bytes.Equal(buf, data[off:off+4096]) {
			t.Fatalf("read 4 KiB at %d: wrong bytes", off)
		}
	}
	waitStores := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(srv.t.around.stores) > 0; {
			if time.Now().After(deadline) {
				t.Fatal("page-cache stores still running after 5 s")
			}
			time.Sleep(time.Millisecond)
		}
	}

	trace.ops()
	read(3<<16 + 40<<10) // block 3
	waitStores()
	if ops := trace.ops(); ops["READ"] == 0 {
		t.Fatalf("first read of block 3 sent no READ: %v", ops)
	}
	for _, off := range []int64{3<<16 + 60<<10, 3<<16 + 8<<10, 3 << 16} {
		read(off)
	}
	if ops := trace.ops(); ops["READ"] != 0 {
		t.Errorf("reads of the rest of block 3 sent %d READ requests, want 0 (all: %v)", ops["READ"], ops)
	}
	// The short last block and its last page.
	read(1<<20 + 4096)
	waitStores()
	trace.ops()
	read(1 << 20)
	if ops := trace.ops(); ops["READ"] != 0 {
		t.Errorf("read of the last block's first page sent %d READ requests, want 0", ops["READ"])
	}
	// Another block still asks the mount.
	read(9 << 16)
	if ops := trace.ops(); ops["READ"] == 0 {
		t.Errorf("read of block 9 sent no READ: %v", ops)
	}
	waitStores()
}

package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// qemuImgData lists the data extents qemu-img map reports for a file.
func qemuImgData(t *testing.T, path, format string) []Extent {
	t.Helper()
	testutil.RequireTools(t, "qemu-img")
	out, err := exec.Command("qemu-img", "map", "--output=json", "-f", format, path).Output()
	if err != nil {
		t.Fatalf("qemu-img map: %v", err)
	}
	var m []struct {
		Start, Length int64
		Data          bool
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("parse qemu-img map: %v", err)
	}
	var ext []Extent
	for _, e := range m {
		if e.Data {
			ext = appendExtent(ext, Extent{Offset: e.Start, Length: e.Length})
		}
	}
	return ext
}

// ranges strips flags and merges touching extents.
func ranges(ext []Extent) []Extent {
	var out []Extent
	for _, e := range ext {
		out = appendExtent(out, Extent{Offset: e.Offset, Length: e.Length})
	}
	return out
}

func checkAllocation(t *testing.T, c *Client, path string) {
	t.Helper()
	got, err := c.AllocatedExtents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := qemuImgData(t, path, "raw")
	if !reflect.DeepEqual(ranges(got), want) {
		t.Fatalf("allocated extents %v, qemu-img map says %v", ranges(got), want)
	}
	// Every span of the layout must be inside an allocated extent.
	for _, s := range testSpans {
		ok := false
		for _, e := range got {
			ok = ok || (e.Offset <= s.off && s.off+s.len <= e.End())
		}
		if !ok {
			t.Fatalf("data span %+v not reported allocated in %v", s, got)
		}
	}
	// A sub-range query is clipped to the range asked for.
	sub, err := c.BlockStatus(context.Background(), 512<<10, 1<<20, ContextBaseAllocation)
	if err != nil {
		t.Fatal(err)
	}
	if len(sub) == 0 || sub[0].Offset != 512<<10 || sub[len(sub)-1].End() != 512<<10+1<<20 {
		t.Fatalf("sub-range block status %v does not cover exactly [512K, 1.5M)", sub)
	}
	if sub[0].Hole() || !sub[len(sub)-1].Hole() {
		t.Fatalf("sub-range block status %v: want data then hole", sub)
	}
}

func TestBlockStatusQemuNBD(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	srv := qemuNBD(t, "-r", "-f", "raw", path)
	checkAllocation(t, dialT(t, srv.uri(""), testOptions()), path)
}

func TestBlockStatusNbdkit(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	srv := nbdkit(t, "file", path)
	checkAllocation(t, dialT(t, srv.uri(""), testOptions()), path)
}

func TestDirtyBitmap(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-io")
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("qemu-img", "create", "-f", "qcow2", img, "64M")
	run("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 128k", img) // before the bitmap: clean
	run("qemu-img", "bitmap", "--add", "-f", "qcow2", img, "b0")
	run("qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 1M 64k", "-c", "write -P 0xbb 10M 4k", img)

	srv := qemuNBD(t, "-r", "-f", "qcow2", "-B", "b0", img)
	o := testOptions()
	o.MetaContexts = []string{ContextDirtyBitmapPrefix + "b0"}
	c := dialT(t, srv.uri(""), o)
	ctx := context.Background()
	dirty, err := c.DirtyExtents(ctx, "b0")
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{1 << 20, 64 << 10, StateDirty}, {10 << 20, 64 << 10, StateDirty}} // 64 KiB granularity
	if !reflect.DeepEqual(dirty, want) {
		t.Fatalf("dirty extents %v, want %v", dirty, want)
	}
	buf := make([]byte, 64<<10)
	if _, err := c.ReadAt(ctx, buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0xaa}, len(buf))) {
		t.Fatal("dirty area does not hold the written pattern")
	}
	alloc, err := c.AllocatedExtents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantAlloc := []Extent{{0, 128 << 10, 0}, {1 << 20, 64 << 10, 0}, {10 << 20, 64 << 10, 0}} // whole clusters
	if got := ranges(alloc); !reflect.DeepEqual(got, wantAlloc) {
		t.Fatalf("allocated extents of the qcow2 %v, want %v", got, wantAlloc)
	}
	if _, err := c.DirtyExtents(ctx, "nope"); !errors.Is(err, ErrContextNotNegotiated) {
		t.Fatalf("unknown bitmap: %v, want ErrContextNotNegotiated", err)
	}
}

// TestBlockStatusLargeExport covers a 100 GiB empty export, which takes
// several block status requests.
func TestBlockStatusLargeExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.raw")
	if out, err := exec.Command("truncate", "-s", "100G", path).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v %s", err, out)
	}
	srv := qemuNBD(t, "-r", "-f", "raw", path)
	c := dialT(t, srv.uri(""), testOptions())
	ext, err := c.BlockStatus(context.Background(), 0, c.Size(), ContextBaseAllocation)
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{0, 100 << 30, StateHole | StateZero}}
	if !reflect.DeepEqual(ext, want) {
		t.Fatalf("extents %v, want %v", ext, want)
	}
	if alloc, err := c.AllocatedExtents(context.Background()); err != nil || len(alloc) != 0 {
		t.Fatalf("allocated extents of an empty export: %v %v", alloc, err)
	}
	if c.Stats().Requests < 100 {
		t.Fatalf("stats %+v: want one request per GiB at least", c.Stats())
	}
}

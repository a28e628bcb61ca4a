package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestPartitionsListsExtendedContainer stores an MBR disk made by sfdisk
// (a primary, an extended container, two logicals) as a point and checks
// that `cairn partitions` lists the container in its place.
func TestPartitionsListsExtendedContainer(t *testing.T) {
	testutil.RequireTools(t, "sfdisk")
	img := filepath.Join(t.TempDir(), "mbr.img")
	sparseImage(t, img, 32<<20)
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader("label: dos\nstart=2048, size=8192, type=83\nstart=10240, size=40960, type=5\nstart=12288, size=8192, type=83\nstart=22528, size=8192, type=7\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v %s", err, out)
	}
	raw, err := os.ReadFile(img)
	mustT(t, err)
	ctx := context.Background()
	repo := testutil.NewRepo(t)
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{Time: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)})
	mustT(t, err)
	w, err := s.AddDisk(ctx, "d0", int64(len(raw)), blockmap.DiskOptions{Full: true})
	mustT(t, err)
	for off := 0; off < len(raw); off += w.BlockSize() {
		if _, err := w.WriteAt(raw[off:off+w.BlockSize()], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(ctx)
	mustT(t, err)
	dr, err := repo.OpenDisk(ctx, p, "d0")
	mustT(t, err)
	defer dr.Close()
	d, err := describeDisk(dr)
	mustT(t, err)
	var got []string
	for _, v := range d.Partitions {
		got = append(got, v.Name)
		if v.Extended != (v.Name == "p2") {
			t.Errorf("%s: extended %v", v.Name, v.Extended)
		}
		if v.Name == "p2" && (v.Start != 10240*512 || v.Size != 40960*512 || v.Browsable || v.Why == "") {
			t.Errorf("extended container: %+v", v)
		}
	}
	if d.Table != "mbr" || strings.Join(got, " ") != "p1 p2 p5 p6" {
		t.Errorf("table %s partitions %v, want mbr p1 p2 p5 p6", d.Table, got)
	}
}

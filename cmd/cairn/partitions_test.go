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

// TestPartitionTableAligned: every row of `cairn partitions` starts its
// columns at the same offsets, MD and LVM rows after the notes of an
// earlier array included (a note line inside the tabwriter table ended
// its column blocks, so the rows after it were aligned among themselves
// only); the notes follow the table.
func TestPartitionTableAligned(t *testing.T) {
	tables := []diskTableJSON{
		{Disk: "sda", Table: "gpt", Partitions: []volumeJSON{{Name: "p1", Start: 1 << 20, Size: 40 << 20, TypeName: "Linux RAID", Filesystem: "ext4", Array: "md/boot", Browsable: true}}},
		{Disk: "md/boot", Table: "md", MadeOf: []string{"slot0=sda/p1", "slot1=sdb/p1"}, Partitions: []volumeJSON{{Name: "whole", Size: 40 << 20, TypeName: "MD 1.0", Filesystem: "ext4", Label: "boot", Browsable: true}}},
		{Disk: "lvm/centos", Table: "lvm", MadeOf: []string{"pv0=md/pv"}, Allocated: 68 << 20, Unallocated: 28 << 20,
			Warnings:   []string{"a metadata area is damaged"},
			Partitions: []volumeJSON{{Name: "root", Size: 60 << 20, TypeName: "linear", Filesystem: "ext4", Label: "root", Browsable: true}}},
	}
	var b strings.Builder
	mustT(t, printPartitionTable(&b, tables))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	header := lines[0]
	col := strings.Index(header, "SIZE")
	fsCol := strings.Index(header, "FS")
	for _, l := range lines[1:4] {
		if len(l) <= fsCol || l[col-1] != ' ' || l[col] == ' ' || l[fsCol-1] != ' ' || l[fsCol] == ' ' {
			t.Errorf("row not aligned with the header (SIZE at %d, FS at %d):\n%s\n%s", col, fsCol, header, l)
		}
	}
	notes := strings.Join(lines[4:], "\n")
	for _, want := range []string{"md/boot: made of slot0=sda/p1 slot1=sdb/p1", "lvm/centos: warning: a metadata area is damaged", "lvm/centos: allocated 68.0 MiB, free 28.0 MiB"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes after the table lack %q:\n%s", want, b.String())
		}
	}
}

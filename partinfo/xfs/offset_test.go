package xfs

import (
	"testing"
)

// TestPartitionOffset opens a filesystem that starts 1 MiB into the
// reader, as a partition does inside a disk image, and probes for it.
func TestPartitionOffset(t *testing.T) {
	src := smallSource(t)
	img := readImage(t, protoImage(t, src, 64<<20))
	const start = 1 << 20
	disk := bytesReaderAt(append(make([]byte, start), img...))
	if Probe(disk, 0) || !Probe(disk, start) {
		t.Fatalf("Probe at 0 = %v, at %d = %v; want false, true", Probe(disk, 0), start, Probe(disk, start))
	}
	if _, err := Open(disk, 0, int64(len(disk))); err == nil {
		t.Fatal("Open at offset 0 of a disk without XFS there succeeded")
	}
	fsys, err := Open(disk, start, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	compareWithSource(t, fsys.(*xfs), src, true)
}

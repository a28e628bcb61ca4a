package backupd

import (
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

func TestPreviousChangeID(t *testing.T) {
	disk := vsphere.Disk{Name: "scsi0-0", Capacity: 1 << 20, ChangeID: "52 aa/7"}
	point := func(size int64, change string) *blockmap.Point {
		return &blockmap.Point{Disks: []blockmap.DiskInfo{{Name: "scsi0-0", Size: size, Meta: mustJSON(DiskMeta{ChangeID: change})}}}
	}
	cases := []struct {
		base   *blockmap.Point
		disk   vsphere.Disk
		prev   string
		reason string
	}{
		{nil, disk, "", "first backup of this VM"},
		{&blockmap.Point{}, disk, "", "first backup of this disk"},
		{point(1<<20, ""), disk, "", "no changeId"},
		{point(1<<20, "52 aa/3"), vsphere.Disk{Name: "scsi0-0", Capacity: 1 << 20}, "", "no changeId"},
		{point(1<<19, "52 aa/3"), disk, "", "size changed"},
		{point(1<<20, "52 bb/3"), disk, "", "reset"},
		{point(1<<20, "52 aa/3"), disk, "52 aa/3", ""},
	}
	for i, c := range cases {
		prev, reason := previousChangeID(c.disk, c.base)
		if prev != c.prev || (c.reason == "" && reason != "") || !strings.Contains(reason, c.reason) {
			t.Errorf("case %d: got %q, %q; want %q, reason with %q", i, prev, reason, c.prev, c.reason)
		}
	}
}

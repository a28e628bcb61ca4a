package backupd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/blockmap"
)

// The plan of an imported disk, from what the flags give and what the
// repository holds.
func TestPlanImport(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := source.OpenFile(path, source.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	areas := []blockmap.Extent{{Offset: 4096, Length: 8192}}
	base := &blockmap.Point{Disks: []blockmap.DiskInfo{{Name: "sda", Size: 1 << 20}}}
	cases := []struct {
		name    string
		disk    ImportDisk
		full    bool
		base    *blockmap.Point
		want    Plan
		wantErr string
	}{
		{"--full", ImportDisk{Name: "sda"}, true, base, Plan{Full: true, Reason: "--full given"}, ""},
		{"no list: compared by hash", ImportDisk{Name: "sda"}, false, base, Plan{Full: true, Reason: "no changed areas given: every block read and compared by hash"}, ""},
		{"changed areas", ImportDisk{Name: "sda", Changed: areas, HasChanged: true}, false, base, Plan{Since: "changed areas given", Areas: areas, AreasKnown: true}, ""},
		{"first import: the point says why", ImportDisk{Name: "sda"}, true, nil, Plan{Full: true}, ""},
		{"disk new to the VM", ImportDisk{Name: "sdb"}, false, base, Plan{Full: true}, ""},
		{"dirty bitmap of a file", ImportDisk{Name: "sda", DirtyBitmap: "b1"}, false, base, Plan{}, "NBD sources only"},
	}
	for _, tc := range cases {
		got, err := planImport(ctx, tc.disk, src, tc.full, tc.base)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.Full != tc.want.Full || got.Reason != tc.want.Reason || got.Since != tc.want.Since ||
			got.AreasKnown != tc.want.AreasKnown || len(got.Areas) != len(tc.want.Areas) {
			t.Errorf("%s: plan %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if err := checkAreasInDisk("sda", []blockmap.Extent{{Offset: 1 << 20, Length: 1}}, 1<<20); err == nil || !strings.Contains(err.Error(), "past the disk's end") {
		t.Errorf("an area past the end: %v", err)
	}
}

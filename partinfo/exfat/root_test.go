package exfat_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo/exfat"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// TestRootTimesAreEpoch: exFAT keeps no times for its root directory;
// its times are the Unix epoch, as exfat-fuse shows them. They were
// Go's zero time (year 1): `ls -l` of fs/<disk>/<part>/ showed
// 0001-01-01 and restore-file set the restored root's mtime to
// whatever the local filesystem made of year 1 (1901-12-13 on ext4).
func TestRootTimesAreEpoch(t *testing.T) {
	testutil.RequireTools(t, "mkfs.exfat")
	img := filepath.Join(t.TempDir(), "x.img")
	fixture.Image(t, img, 8<<20)
	fixture.Run(t, nil, "mkfs.exfat", img)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := exfat.Open(f, 0, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	a, err := v.Stat(v.Root())
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(0, 0)
	if !a.Mtime.Equal(epoch) || !a.Atime.Equal(epoch) || !a.Ctime.Equal(epoch) {
		t.Errorf("root times %v %v %v, want the Unix epoch", a.Mtime, a.Atime, a.Ctime)
	}
}

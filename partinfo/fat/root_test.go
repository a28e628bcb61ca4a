package fat_test

import (
	"testing"
	"time"
)

// TestRootTimesAreEpoch: FAT keeps no times for its root directory; its
// times are the Unix epoch, as the kernel's vfat driver shows them
// (fat_read_root). They were Go's zero time (year 1), which the mount
// showed as 0001-01-01 and restore-file wrote as 1901-12-13 on ext4.
func TestRootTimesAreEpoch(t *testing.T) {
	img := fatImage(t, 16, 16<<20, 0, "")
	_, v := openImage(t, img, 0)
	a, err := v.Stat(v.Root())
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(0, 0)
	if !a.Mtime.Equal(epoch) || !a.Atime.Equal(epoch) || !a.Ctime.Equal(epoch) {
		t.Errorf("root times %v %v %v, want the Unix epoch", a.Mtime, a.Atime, a.Ctime)
	}
}

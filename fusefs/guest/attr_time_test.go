package guest

import (
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestFillAttrTimesOutsideNanosecondRange guards the FUSE side of issue
// #17 item 6: times are handed to the kernel as seconds and nanoseconds,
// so 1601 and 2300 (outside int64 nanoseconds) arrive exactly.
func TestFillAttrTimesOutsideNanosecondRange(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(1601, 1, 1, 0, 0, 0, 100, time.UTC),
		time.Date(2300, 1, 1, 12, 0, 0, 5, time.UTC),
	} {
		var out fuse.Attr
		fillAttr(&out, partinfo.Attr{Ino: 7, Mode: 0o444, Atime: tm, Mtime: tm, Ctime: tm}, 0)
		for name, got := range map[string]time.Time{"atime": out.AccessTime(), "mtime": out.ModTime(), "ctime": out.ChangeTime()} {
			if !got.Equal(tm) {
				t.Errorf("%s %v arrives as %v", name, tm, got.UTC())
			}
		}
	}
}

package ext4

import (
	"bytes"
	"errors"

	"path"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestExtentsGiveTheFileBytes: the bytes at a file's extents, read
// straight from the disk the filesystem sits on (at a partition offset),
// are the file's bytes; inline data has no extents.
func TestExtentsGiveTheFileBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		inline bool
	}{{"extents", nil, false}, {"indirect", []string{"-t", "ext3"}, false}, {"inline", []string{"-O", "inline_data"}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			img, files := smallImage(t, tc.args...)
			const off = 7 * 4096
			disk := append(make([]byte, off), img...)
			fsys, err := Open(bytes.NewReader(disk), off, int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			checked, inline := 0, 0
			for name, content := range files {
				ino := fsys.Root()
				for _, part := range splitPath(name) {
					if ino, err = fsys.Lookup(ino, part); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				}
				ext, err := partinfo.Extents(fsys, ino)
				if errors.Is(err, partinfo.ErrNoExtents) {
					inline++
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got := make([]byte, len(content))
				for _, e := range ext {
					if e.Physical < off || e.Unwritten {
						t.Fatalf("%s: extent %+v before the partition or unwritten", name, e)
					}
					if e.Logical < int64(len(got)) {
						copy(got[e.Logical:], disk[e.Physical:e.Physical+e.Length])
					}
				}
				if string(got) != content {
					t.Errorf("%s: the bytes at its extents are not the file's", name)
				}
				checked++
			}
			if tc.inline && inline == 0 || !tc.inline && inline != 0 {
				t.Errorf("%d files without extents, want them only with inline_data", inline)
			}
			if checked == 0 {
				t.Error("no file checked")
			}
			t.Logf("%d files checked, %d inline", checked, inline)
			if _, err := partinfo.Extents(fsys, fsys.Root()); !errors.Is(err, partinfo.ErrNotRegular) {
				t.Errorf("extents of a directory: %v, want ErrNotRegular", err)
			}
		})
	}
}

func splitPath(p string) []string {
	var out []string
	for p != "." && p != "" {
		out = append([]string{path.Base(p)}, out...)
		p = path.Dir(p)
	}
	return out
}

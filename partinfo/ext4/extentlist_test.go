package ext4

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
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

// TestExtentsUnderAReplayedJournal: an image copied from a live mount
// (its journal replayed in memory): a file's extents are given when the
// journal holds none of their blocks, and then its bytes are the file's;
// a journal block over a file's data takes its extents away.
func TestExtentsUnderAReplayedJournal(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount", "cp")
	ram := ramDir(t)
	img := filepath.Join(ram, "live.img")
	makeImage(t, img, 64<<20, "mkfs.ext4", "-O", "^inline_data")
	mnt, _ := loopMount(t, img, false)
	files := map[string][]byte{}
	for i := range 20 {
		name := fmt.Sprintf("f%02d", i)
		files[name] = bytes.Repeat([]byte(name), 3000+i*500)
		fh, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		fh.Write(files[name])
		if err := fh.Sync(); err != nil { // data out, the transaction committed to the journal
			t.Fatal(err)
		}
		fh.Close()
	}
	crash := filepath.Join(ram, "crash.img")
	runCmd(t, "cp", "--sparse=always", img, crash)
	raw, err := os.ReadFile(crash)
	if err != nil {
		t.Fatal(err)
	}
	f := openImage(t, crash)
	if f.journal == nil {
		t.Fatal("the copy has no journal to replay: the fixture did not work")
	}
	checked := 0
	var some uint64
	for name, content := range files {
		ino, err := f.Lookup(f.Root(), name)
		if err != nil {
			t.Fatal(err)
		}
		ext, err := f.Extents(ino)
		if errors.Is(err, partinfo.ErrNoExtents) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(content))
		for _, e := range ext {
			if e.Logical < int64(len(got)) {
				copy(got[e.Logical:], raw[e.Physical:e.Physical+e.Length])
			}
		}
		if !bytes.Equal(got, content) {
			t.Errorf("%s: the on-disk bytes at its extents are not the file's", name)
		}
		checked++
		some = ino
	}
	t.Logf("%d of %d files have extents under a journal of %d blocks", checked, len(files), len(f.journal.blocks))
	if checked == 0 {
		t.Fatal("no file has extents")
	}
	ext, _ := f.Extents(some)
	blk := uint64(ext[0].Physical / f.sb.blockSize)
	f.journal.blocks = append(f.journal.blocks, blk)
	slices.Sort(f.journal.blocks)
	if _, err := f.Extents(some); !errors.Is(err, partinfo.ErrNoExtents) {
		t.Errorf("a journal block over the data: %v, want ErrNoExtents", err)
	}
}

package partinfo_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestSafeOpen: a reader that panics while opening gives an error wrapping
// ErrCorrupt that names the filesystem; one that opens is wrapped in Safe
// (its panics become errors too); an open error passes through.
func TestSafeOpen(t *testing.T) {
	fsys, err := partinfo.SafeOpen("memfs", func() (partinfo.Filesystem, error) {
		var m map[int]int
		m[1] = 1 // a real runtime panic, as a parser bug would cause
		return nil, nil
	})
	if fsys != nil || !errors.Is(err, partinfo.ErrCorrupt) || !strings.Contains(err.Error(), "memfs: open: parser panic") {
		t.Errorf("panicking open: %v, %v; want ErrCorrupt naming memfs", fsys, err)
	}
	m := sampleFS()
	fsys, err = partinfo.SafeOpen("memfs", func() (partinfo.Filesystem, error) { return m, nil })
	if err != nil {
		t.Fatal(err)
	}
	m.panic = true
	if _, err := fsys.Stat(3); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("stat through SafeOpen's result: %v, want ErrCorrupt", err)
	}
	refused := errors.New("not this kind")
	if fsys, err := partinfo.SafeOpen("memfs", func() (partinfo.Filesystem, error) { return m, refused }); fsys != nil || err != refused {
		t.Errorf("failed open: %v, %v; want nil, the reader's error", fsys, err)
	}
}

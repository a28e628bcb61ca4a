package guest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
)

// countingFS counts the ReadDir calls that reach a real reader.
type countingFS struct {
	partinfo.Filesystem
	readDirs atomic.Int64
}

func (c *countingFS) ReadDir(ino uint64) ([]partinfo.DirEntry, error) {
	c.readDirs.Add(1)
	return c.Filesystem.ReadDir(ino)
}

// TestPrefetcherListsSubdirectoriesAhead: after a directory's listing,
// its subdirectories (and nothing deeper) are listed in the background,
// and their listings, taken once, equal the reader's own.
func TestPrefetcherListsSubdirectoriesAhead(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4")
	stage := t.TempDir()
	for _, d := range []string{"a/deep", "b", "c"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(stage, d, "f"), []byte("x"), 0o644)
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", stage, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	inner, err := fsopen.Open(f, 0, fi.Size(), partinfo.Detect(f, 0, fi.Size()))
	if err != nil {
		t.Fatal(err)
	}
	fsys := &countingFS{Filesystem: inner}
	root, err := fsys.ReadDir(fsys.Root())
	if err != nil {
		t.Fatal(err)
	}
	p := newPrefetcher()
	p.ahead(fsys, root)
	var dirs []uint64
	for _, e := range root {
		if e.Type.IsDir() && e.Name != "lost+found" {
			dirs = append(dirs, e.Ino)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		idle := p.workers == 0
		p.mu.Unlock()
		if idle || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// root, then a, b, c and lost+found: not a/deep.
	if got := fsys.readDirs.Load(); got != 5 {
		t.Errorf("%d listings after listing the root, want 5 (the root and its 4 subdirectories)", got)
	}
	for _, ino := range dirs {
		got, ok := p.take(ino)
		if !ok {
			t.Fatalf("directory %d was not listed ahead", ino)
		}
		want, err := inner.ReadDir(ino)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("listing of %d ahead %v, reader %v", ino, got, want)
		}
		if _, again := p.take(ino); again {
			t.Errorf("listing of %d taken twice", ino)
		}
	}
	if p.names != 0 {
		t.Errorf("%d names still held after every listing was taken", p.names)
	}
}

// TestListAheadOnlyOnExt: ext2/3/4 list ahead; XFS (no reads saved) and
// the readers that serialise every call (NTFS, FAT, exFAT, btrfs) do
// not, and a nil prefetcher is a no-op.
func TestListAheadOnlyOnExt(t *testing.T) {
	for typ, want := range map[string]bool{"ext4": true, "ext3": true, "ext2": true, "xfs": false, "ntfs": false, "fat32": false, "exfat": false, "btrfs": false} {
		if got := newDirCacheFor(typ).ahead != nil; got != want {
			t.Errorf("%s lists ahead: %v, want %v", typ, got, want)
		}
	}
	var p *prefetcher
	p.ahead(nil, []partinfo.DirEntry{{Name: "d", Ino: 5, Type: fs.ModeDir}})
	if _, ok := p.take(5); ok {
		t.Error("a nil prefetcher returned a listing")
	}
}

package ext4

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
)

// TestAbsurdSizeIsCorrupt sets a file's i_size to 2^48 with debugfs
// (which keeps the inode checksum right): no ext4 block map reaches that
// far, so reading must fail instead of returning endless zeros.
func TestAbsurdSizeIsCorrupt(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4", "debugfs")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "e.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"mkfs.ext4", "-q", "-b", "4096", "-d", src, img}, {"debugfs", "-w", "-R", "sif /f size 281474976710656", img}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(bytes.NewReader(raw), 0, int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	ino, err := v.Lookup(v.Root(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := v.Stat(ino); err != nil || a.Size != 1<<48 {
		t.Fatalf("stat: size %d, %v; the fixture did not take", a.Size, err)
	}
	buf := make([]byte, 4096)
	if _, err := v.ReadAt(ino, buf, 1<<40); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("read at 1 TiB of a 2^48-byte file on an 8 MiB volume: %v, want ErrCorrupt", err)
	}
}

package ext4

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// smallTree writes a few files that exercise most structures in a tiny image.
func smallTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	files := map[string]string{
		"hello.txt":        "hello, world\n",
		"inline.txt":       strings.Repeat("i", 100),
		"sub/data.bin":     strings.Repeat("0123456789abcdef", 6000),
		"sub/deeper/x.txt": "x",
	}
	for i := 0; i < 40; i++ {
		files[fmt.Sprintf("many/file-%02d", i)] = fmt.Sprint(i)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("hello.txt", filepath.Join(dir, "fast")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("long/", 30), filepath.Join(dir, "slow")); err != nil {
		t.Fatal(err)
	}
	return files
}

// smallImage builds a 1 MiB image with mkfs -d (no root needed) and returns
// its bytes and the file contents it holds.
func smallImage(t testing.TB, mkfsArgs ...string) ([]byte, map[string]string) {
	t.Helper()
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	files := smallTree(t, src)
	img := filepath.Join(dir, "small.img")
	args := append([]string{"-b", "1024", "-N", "128", "-O", "^has_journal", "-U", testUUID}, mkfsArgs...)
	makeImage(t, img, 1<<20, "mkfs.ext4", append(args, "-d", src)...)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b, files
}

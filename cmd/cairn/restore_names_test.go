package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRestoreNamesNotUTF8: guest names are bytes. A Linux name that is
// not UTF-8 (Latin-1 from an old system) and the WTF-8 form cairn gives
// an NTFS/FAT name holding an unpaired surrogate are listed and restored
// like any other; they used to fail with "invalid argument" (io/fs's
// ValidPath wants UTF-8), taking a whole directory with them.
func TestRestoreNamesNotUTF8(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	latin1 := "caf\xe9"           // café in Latin-1
	surrogate := "x\xed\xa0\x80y" // WTF-8 of an unpaired U+D800
	mustT(t, os.MkdirAll(filepath.Join(src, latin1), 0o755))
	mustT(t, os.WriteFile(filepath.Join(src, latin1, "menu"), []byte("menu"), 0o644))
	mustT(t, os.WriteFile(filepath.Join(src, surrogate), []byte("s"), 0o644))
	fsys := ext4Of(t, src, 8<<20)

	dest := filepath.Join(dir, "out")
	rep, lines, err := restore(t, fsys, ".", dest, false)
	if err != nil || rep.failed != 0 {
		t.Fatalf("restore: %+v %v\n%s", rep, err, lines)
	}
	for rel, want := range map[string]string{filepath.Join(latin1, "menu"): "menu", surrogate: "s"} {
		if b, err := os.ReadFile(filepath.Join(dest, rel)); err != nil || string(b) != want {
			t.Errorf("%q: %q %v", rel, b, err)
		}
	}
	if p, err := guestPath("/" + latin1 + "/menu"); err != nil || p != latin1+"/menu" {
		t.Errorf("guestPath of a Latin-1 name: %q %v", p, err)
	}
}

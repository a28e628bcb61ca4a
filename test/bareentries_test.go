package test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestGuestListingGuessesTheWalk: a walk that only reads names and types
// (as find does) gets its files listed without attributes, so the kernel
// creates no inode for them and a later stat of one sends a LOOKUP; a
// walk that stats every entry (as tar does) gets attributes back after
// its first stat, so it sends a LOOKUP only for the files of the odd
// probe listing, not one per file (fusefs/guest/bareentries.go).
func TestGuestListingGuessesTheWalk(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	// Enough directories for the three probes (one every 32 listings of
	// few files) a names-only walk takes to go bare.
	const dirs, files = 120, 6
	for _, top := range []string{"a", "b"} {
		for d := range dirs {
			p := filepath.Join(stage, top, fmt.Sprintf("d%02d", d))
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			for f := range files {
				if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("f%d", f)), []byte(p), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	img := filepath.Join(dir, "ext4.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", stage, img, "64M")
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	mustCairn(t, "--repo", repoDir, "import", "--vm", "w", "--disk", "sda", img)
	mnt := filepath.Join(dir, "mnt")
	trace := mountTraced(t, repoDir, mnt)
	root := filepath.Join(mnt, "w", "latest", "fs", "sda", "whole")

	// A names-only walk of a/ (WalkDir reads d_type, stats nothing).
	var listed []string
	if err := filepath.WalkDir(filepath.Join(root, "a"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			listed = append(listed, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(listed) != dirs*files {
		t.Fatalf("walk of a/ found %d files, want %d", len(listed), dirs*files)
	}
	// The files of the last directories were listed bare: each stat is
	// a LOOKUP now, and gives the right attributes.
	last := listed[len(listed)-3*files:]
	trace.ops()
	for _, p := range last {
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() != int64(len(filepath.Dir(p))-len(root)+len(stage)) {
			t.Fatalf("lstat %s: %v %v", p, st, err)
		}
	}
	if n := trace.ops()["LOOKUP"]; n < len(last) {
		t.Errorf("stat of %d files listed by a names-only walk sent %d LOOKUP requests, want one each (listed without attributes)", len(last), n)
	}

	// A stat-every-entry walk of b/: attributes are back after its first
	// directory, a LOOKUP only for the probe listings' files (one listing
	// in 32).
	if err := filepath.WalkDir(filepath.Join(root, "b"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		_, err = os.Lstat(p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n, most := trace.ops()["LOOKUP"], (dirs/32+2)*files; n > most {
		t.Errorf("a walk statting all %d files of b/ sent %d LOOKUP requests, want at most %d (attributes listed)", dirs*files, n, most)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
)

// cancellingFS cancels the restore's context at its first data read
// and counts the reads after that.
type cancellingFS struct {
	partinfo.Filesystem
	cancel func()
	reads  int
}

func (c *cancellingFS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	c.reads++
	c.cancel()
	return c.Filesystem.ReadAt(ino, p, off)
}

// TestRestoreFileStopsMidFile: Ctrl-C while a large file is copied stops
// at the next read, removes the partial file and reports the interruption
// (it used to go on to the end of the file: a 500 MiB file ignored
// Ctrl-C until it was all written, then counted as restored).
func TestRestoreFileStopsMidFile(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	mustT(t, os.MkdirAll(src, 0o755))
	mustT(t, os.WriteFile(filepath.Join(src, "big.bin"), bytes.Repeat([]byte("0123456789abcdef"), 1<<20), 0o644)) // 16 MiB of data
	mustT(t, os.WriteFile(filepath.Join(src, "later.txt"), []byte("later"), 0o644))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfs := &cancellingFS{Filesystem: ext4Of(t, src, 64<<20), cancel: cancel}
	dest := filepath.Join(dir, "out")
	var rep bytes.Buffer
	r, err := restoreTree(ctx, cfs, ".", dest, restoreOptions{report: &rep})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("restore after Ctrl-C: %v, want context.Canceled", err)
	}
	if cfs.reads > 1 {
		t.Errorf("%d reads of 1 MiB after the cancellation, want the copy stopped at once", cfs.reads-1)
	}
	if _, err := os.Lstat(filepath.Join(dest, "big.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a partial big.bin is left behind: %v", err)
	}
	if r.failed != 0 || bytes.Contains(rep.Bytes(), []byte("FAILED")) {
		t.Errorf("the interruption was reported as a failed entry: %+v\n%s", r, rep.String())
	}
}

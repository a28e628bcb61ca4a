package main

import (
	"io"
	"strings"
	"testing"
)

// TestMountMaxOpenFilesystemsAtLeastOne: a bound below one is refused
// with the default named, before anything is mounted.
func TestMountMaxOpenFilesystemsAtLeastOne(t *testing.T) {
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := app.Run([]string{"cairn", "--repo", t.TempDir(), "mount", "--max-open-filesystems", "0", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "--max-open-filesystems must be at least 1 (default 16)") {
		t.Fatalf("mount --max-open-filesystems 0: %v", err)
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRestoreDest: restore-file's DEST is the copy's name, or a directory
// to restore into; missing parents are made (`restore-file /etc
// ./restored/etc` in an empty directory used to fail with "mkdir
// restored/etc: no such file or directory").
func TestRestoreDest(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "into")
	mustT(t, os.Mkdir(existing, 0o755))
	for _, tc := range []struct{ dest, guest, want string }{
		{filepath.Join(dir, "a", "b", "etc"), "etc", filepath.Join(dir, "a", "b", "etc")},
		{existing, "etc/nginx", filepath.Join(existing, "nginx")},
		{existing, ".", existing},
		{filepath.Join(dir, "c", "root"), ".", filepath.Join(dir, "c", "root")},
		// A trailing slash: into that directory, made when missing.
		{filepath.Join(dir, "new") + "/", "etc/hostname", filepath.Join(dir, "new", "hostname")},
		{filepath.Join(dir, "new2") + "/", "home/user", filepath.Join(dir, "new2", "user")},
	} {
		got, err := restoreDest(tc.dest, tc.guest)
		if err != nil || got != tc.want {
			t.Errorf("restoreDest(%s, %s) = %s, %v; want %s", tc.dest, tc.guest, got, err, tc.want)
			continue
		}
		if fi, err := os.Stat(filepath.Dir(got)); err != nil || !fi.IsDir() {
			t.Errorf("restoreDest(%s, %s): parent of %s not made: %v", tc.dest, tc.guest, got, err)
		}
	}
	file := filepath.Join(dir, "file")
	mustT(t, os.WriteFile(file, nil, 0o644))
	if _, err := restoreDest(filepath.Join(file, "x", "etc"), "etc"); err == nil {
		t.Error("a DEST below a regular file was accepted")
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cairnbackup/cairn/partinfo"
)

// manyXattrFS is a guest file system whose one file has n user.*
// attributes of 200 bytes each: more than an ext4 (or tmpfs) target
// holds.
type manyXattrFS struct {
	fstest.MapFS
	n int
}

func (m manyXattrFS) LXattrs(string) ([]partinfo.Xattr, error) {
	var xs []partinfo.Xattr
	for i := 0; i < m.n; i++ {
		xs = append(xs, partinfo.Xattr{Name: fmt.Sprintf("user.attribute-with-a-long-name-%04d", i), Value: []byte(strings.Repeat("v", 200))})
	}
	return xs, nil
}

// TestRestoreXattrFailureIsOneShortLine: when the target cannot hold a
// file's attributes, restore-file's FAILED line says how many failed and
// why, naming a few: a btrfs file with 400 attributes restored onto ext4
// gave one 30,000-character line naming every attribute with its error.
func TestRestoreXattrFailureIsOneShortLine(t *testing.T) {
	target := filepath.Join(t.TempDir(), "f")
	mustT(t, os.WriteFile(target, nil, 0o644))
	gfs := manyXattrFS{MapFS: fstest.MapFS{"f": {}}, n: 400}
	err := restoreXattrs(gfs, "f", target)
	if err == nil {
		t.Skip("the temporary directory's filesystem holds 400 attributes of 200 bytes")
	}
	msg := err.Error()
	if len(msg) > 600 || !strings.Contains(msg, "more") || !strings.Contains(msg, "of 400 extended attributes") {
		t.Errorf("%d characters: %.1000s", len(msg), msg)
	}
}

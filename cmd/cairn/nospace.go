package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/bytesize"
)

// isNoSpace reports whether err is a full filesystem (ENOSPC, or its text
// where a library wraps it with %v, as Badger does).
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || strings.Contains(err.Error(), unix.ENOSPC.Error())
}

// noSpaceHint is what to do about a full filesystem: it names the
// filesystem (its mount point and free space) when the error names a
// path, and the two fixes.
func noSpaceHint(err error) string {
	where := "the filesystem named above ran out of space"
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path != "" {
		if mnt, free, ok := filesystemOf(pe.Path); ok {
			where = fmt.Sprintf("the filesystem mounted at %s (holding %s) ran out of space (%s free now)", mnt, pe.Path, bytesize.IEC(free))
		}
	}
	return where + "; free space there (delete old points with `cairn prune` or `cairn forget` when it holds the repository) " +
		"or move the repository or output to a larger filesystem, then run the command again: nothing committed was changed"
}

// filesystemOf is the mount point of the filesystem holding path (the
// nearest existing ancestor of it) and its free space.
func filesystemOf(path string) (mnt string, free int64, ok bool) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", 0, false
	}
	var st unix.Stat_t
	for unix.Stat(p, &st) != nil {
		if p == filepath.Dir(p) {
			return "", 0, false
		}
		p = filepath.Dir(p)
	}
	dev := st.Dev
	for p != filepath.Dir(p) {
		var up unix.Stat_t
		if unix.Stat(filepath.Dir(p), &up) != nil || up.Dev != dev {
			break
		}
		p = filepath.Dir(p)
	}
	var sf unix.Statfs_t
	if unix.Statfs(p, &sf) != nil {
		return p, 0, false
	}
	return p, int64(sf.Bavail) * int64(sf.Bsize), true
}

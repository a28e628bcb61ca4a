package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"syscall"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/btrfs"
)

// lsMode renders a mode as ls -l does (guestfind.LsMode).
func lsMode(m fs.FileMode) string { return guestfind.LsMode(m) }

// fileEntry fills the fields of one `cairn files` entry that come from
// the guest's attributes: owner and, for device nodes, the device.
func fileEntry(j *fileJSON, fi fs.FileInfo) {
	a, ok := fi.Sys().(partinfo.Attr)
	if !ok {
		return
	}
	uid, gid := a.Uid, a.Gid
	j.UID, j.GID = &uid, &gid
	if fi.Mode()&fs.ModeDevice != 0 {
		j.Device = fmt.Sprintf("%d:%d", unix.Major(uint64(a.Rdev)), unix.Minor(uint64(a.Rdev)))
	}
}

// guestPathError turns a failed lookup of guest path p into what a user
// can act on: which path, why, and how to see what is there (the
// readers' own wording names inode numbers).
func guestPathError(cmd, p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %s does not exist in this filesystem (list %s with `cairn files` to see what does)", cmd, show(p), show(path.Dir(p)))
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, partinfo.ErrNotDir):
		return fmt.Errorf("%s: %s: a part of the path before its last name is not a directory", cmd, show(p))
	}
	return fmt.Errorf("%s: %s: %w", cmd, show(p), err)
}

// openAdvice is what files and restore-file add to an error opening a
// volume: the --volume that reads the assembled volume it belongs to.
func openAdvice(detected string, err error, vm string) string {
	if errors.Is(err, btrfs.ErrMultiDevice) {
		return fmt.Sprintf(" Read the assembled filesystem with --volume btrfs/NAME (`cairn partitions --vm %s` lists it).", vm)
	}
	return volumeAdvice(detected, vm)
}

// displayName is a guest name as the text listing shows it: unchanged,
// or quoted with Go escapes when it holds control characters (a tab or
// newline would split the listing's columns or lines) or is not UTF-8,
// as ls quotes such names. --json carries the name itself.
func displayName(name string) string {
	if !utf8.ValidString(name) {
		return strconv.Quote(name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return strconv.Quote(name)
		}
	}
	return name
}

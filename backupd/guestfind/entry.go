package guestfind

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
)

// Entry is what a point holds at a path: the attributes of the entry
// (not followed when it is a symlink) and, for a regular file in a
// history, the SHA-256 of its bytes.
type Entry struct {
	Mode     fs.FileMode // type and permission bits
	UID      uint32
	GID      uint32
	HasOwner bool // the filesystem records owners (not FAT, exFAT)
	Size     int64
	Mtime    time.Time
	Ino      uint64
	Target   string // a symlink's target
	SHA256   string // hex; regular files in a history only
}

// Kind names the entry's type: file, dir, symlink, fifo, socket, char,
// block.
func (e Entry) Kind() string { return kindOf(e.Mode) }

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "char"
	case m&fs.ModeDevice != 0:
		return "block"
	}
	return "file"
}

// key is the version identity of the entry: every field but the inode
// number (a file restored from a backup is the same version whatever
// inode it got).
func (e Entry) key() string {
	return fmt.Sprintf("%v|%d|%d|%d|%d|%q|%s", e.Mode, e.UID, e.GID, e.Size, e.Mtime.UnixNano(), e.Target, e.SHA256)
}

func entryOf(a partinfo.Attr, owners bool) Entry {
	return Entry{Mode: a.Mode, UID: a.Uid, GID: a.Gid, HasOwner: owners, Size: a.Size, Mtime: a.Mtime.UTC(), Ino: a.Ino}
}

// hasOwners says whether a filesystem type records owners.
func hasOwners(typ string) bool {
	switch typ {
	case "fat12", "fat16", "fat32", "exfat", "ntfs":
		return false
	}
	return true
}

// notThere reports whether a lookup error means "no such entry" (the
// path or a parent is missing, or a parent is no directory).
func notThere(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, partinfo.ErrNotDir) || errors.Is(err, syscall.ENOTDIR)
}

// lookup finds path p (io/fs form, "." for the root) in fsys without
// following a symlink at its end. ok is false when it is not there.
func lookup(fsys partinfo.Filesystem, typ, p string) (e Entry, ok bool, err error) {
	fi, err := fs.Lstat(partinfo.AsFS(fsys), p)
	if err != nil {
		if notThere(err) {
			return Entry{}, false, nil
		}
		return Entry{}, false, err
	}
	a, isAttr := fi.Sys().(partinfo.Attr)
	if !isAttr {
		return Entry{}, false, fmt.Errorf("%s: no attributes", p)
	}
	e = entryOf(a, hasOwners(typ))
	if a.Mode&fs.ModeSymlink != 0 {
		if e.Target, err = fsys.Readlink(a.Ino); err != nil {
			return Entry{}, false, err
		}
	}
	return e, true, nil
}

// hashFile is the SHA-256 of a regular file's bytes.
func hashFile(ctx context.Context, fsys partinfo.Filesystem, ino uint64, size int64) (string, int64, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return "", off, err
		}
		want := buf[:min(int64(len(buf)), size-off)]
		n, err := fsys.ReadAt(ino, want, off)
		h.Write(want[:n])
		off += int64(n)
		if err == io.EOF || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return "", off, err
		}
	}
	if off != size {
		return "", off, fmt.Errorf("read %d of %d bytes: %w", off, size, io.ErrUnexpectedEOF)
	}
	return hex.EncodeToString(h.Sum(nil)), off, nil
}

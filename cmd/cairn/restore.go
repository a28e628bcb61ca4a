package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/partinfo"
)

// nameMax is the longest file name (in bytes) Linux filesystems accept.
const nameMax = 255

// restoreOptions steer restoreTree.
type restoreOptions struct {
	failFast bool      // stop at the first failure (the old behaviour)
	noXattrs bool      // --no-xattrs: leave extended attributes and ACLs out
	report   io.Writer // one line per failed, skipped or renamed entry
}

// restoreReport counts what restoreTree did. Renamed entries are among
// the restored ones.
type restoreReport struct {
	restored, failed, skipped, renamed int
	noSpace                            error // the first failure for want of space, if any
}

// summary is the line that ends a restore-file run; entries restored
// under a shortened name are counted in brackets (when there are any).
func (r restoreReport) summary(dest string) string {
	renamed := ""
	if r.renamed > 0 {
		renamed = fmt.Sprintf(" (%d renamed)", r.renamed)
	}
	return fmt.Sprintf("restored %d%s, failed %d, skipped %d to %s", r.restored, renamed, r.failed, r.skipped, dest)
}

// restorer walks one guest tree and writes it out.
type restorer struct {
	ctx    context.Context
	fsys   partinfo.Filesystem
	gfs    fs.FS
	opt    restoreOptions
	rep    restoreReport
	linked map[uint64]string // guest inode -> restored path (hard links)
	onPath map[uint64]bool   // directory inodes from the top to here (cycles)
	dirs   []dirMeta
	buf    []byte
}

type dirMeta struct {
	path  string
	guest string
	fi    fs.FileInfo
}

// errStop ends the walk (cancelled, or --fail-fast after a failure).
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

// restoreTree copies src (file, symlink, special file or directory tree)
// of fsys to dest, keeping modes, owners (as root), times, hard links and
// holes. It restores everything it can: an entry that cannot be read or
// written is reported on one line with the reason and the walk goes on
// (unless opt.failFast). The error is non-nil only when the walk stopped.
func restoreTree(ctx context.Context, fsys partinfo.Filesystem, src, dest string, opt restoreOptions) (restoreReport, error) {
	if opt.report == nil {
		opt.report = io.Discard
	}
	gfs := partinfo.AsFS(fsys)
	if opt.noXattrs {
		gfs = hideXattrs(gfs)
	}
	r := &restorer{ctx: ctx, fsys: fsys, gfs: gfs, opt: opt,
		linked: map[uint64]string{}, onPath: map[uint64]bool{}, buf: make([]byte, 1<<20)}
	err := r.walk(src, dest)
	// Directory modes and times last, deepest first, after their content.
	for i := len(r.dirs) - 1; i >= 0; i-- {
		merr := applyMeta(r.dirs[i].path, r.dirs[i].fi)
		if merr == nil {
			// After their content: a default ACL set earlier would be
			// inherited by it.
			merr = restoreXattrs(r.gfs, r.dirs[i].guest, r.dirs[i].path)
		}
		if merr != nil && err == nil {
			if ferr := r.fail(r.dirs[i].path, merr); ferr != nil {
				err = ferr
			}
		}
	}
	var stop errStop
	if errors.As(err, &stop) {
		return r.rep, stop.err
	}
	return r.rep, err
}

// show renders a guest path for the report.
func show(p string) string {
	if p == "." {
		return "/"
	}
	return "/" + p
}

// fail reports one failed entry; with failFast it stops the walk.
func (r *restorer) fail(p string, err error) error {
	r.rep.failed++
	if r.rep.noSpace == nil && isNoSpace(err) {
		r.rep.noSpace = err
	}
	fmt.Fprintf(r.opt.report, "FAILED %s: %s\n", show(p), errLine(err))
	if r.opt.failFast {
		return errStop{fmt.Errorf("%s: %w", show(p), err)}
	}
	return nil
}

func (r *restorer) skip(p, why string) {
	r.rep.skipped++
	fmt.Fprintf(r.opt.report, "SKIPPED %s: %s\n", show(p), why)
}

func errLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
}

// walk restores guest path p to target.
func (r *restorer) walk(p, target string) error {
	if err := r.ctx.Err(); err != nil {
		return errStop{err}
	}
	fi, err := fs.Lstat(r.gfs, p)
	if err != nil {
		return r.fail(p, err)
	}
	a, _ := fi.Sys().(partinfo.Attr)
	mode := fi.Mode()
	if !mode.IsDir() {
		// As cp -a: a directory in the way is never replaced (removing
		// it failed silently when it held anything, or dropped it when
		// it was empty).
		if st, err := os.Lstat(target); err == nil && st.IsDir() {
			return r.fail(p, fmt.Errorf("%s exists and is a directory: the guest's %s is not restored onto it; move it away or give another DEST", target, guestKind(mode)))
		}
	}
	switch {
	case mode.IsDir():
		return r.dir(p, target, fi, a)
	case mode&fs.ModeSymlink != 0:
		link, err := fs.ReadLink(r.gfs, p)
		if err != nil {
			return r.fail(p, err)
		}
		os.Remove(target)
		if err := os.Symlink(link, target); err != nil {
			return r.fail(p, err)
		}
	case mode.IsRegular():
		// A hard link is restored as a hard link to the first name.
		if a.Nlink > 1 {
			if first, ok := r.linked[a.Ino]; ok {
				os.Remove(target)
				if err := os.Link(first, target); err != nil {
					return r.fail(p, err)
				}
				r.rep.restored++
				return nil
			}
		}
		// Written beside target and renamed into place with its
		// metadata: a failed or killed restore never leaves a file at
		// target that looks restored but is not (partial.go).
		out, err := r.file(target, fi, a)
		if err != nil {
			if cerr := r.ctx.Err(); cerr != nil {
				return errStop{cerr} // interrupted, not a failure of this entry
			}
			return r.fail(p, err)
		}
		merr := applyMeta(out.Name(), fi)
		if merr == nil {
			// After owner and mode: chown clears a file capability.
			merr = restoreXattrs(r.gfs, p, out.Name())
		}
		if err := out.commit(false); err != nil {
			return r.fail(p, err)
		}
		if a.Nlink > 1 {
			r.linked[a.Ino] = target
		}
		if merr != nil {
			return r.fail(p, merr)
		}
		r.rep.restored++
		return nil
	case mode&(fs.ModeNamedPipe|fs.ModeDevice) != 0:
		if os.Geteuid() != 0 && mode&fs.ModeNamedPipe == 0 {
			r.skip(p, "device node: only root can create it (device "+devString(a.Rdev)+")")
			return nil
		}
		typ := uint32(unix.S_IFIFO)
		switch {
		case mode&fs.ModeCharDevice != 0:
			typ = unix.S_IFCHR
		case mode&fs.ModeDevice != 0:
			typ = unix.S_IFBLK
		}
		os.Remove(target)
		if err := unix.Mknod(target, typ|0o600, int(a.Rdev)); err != nil {
			return r.fail(p, fmt.Errorf("mknod: %w", err))
		}
	default:
		r.skip(p, "socket: a socket cannot be restored as a file")
		return nil
	}
	if err := applyMeta(target, fi); err != nil {
		return r.fail(p, err)
	}
	// After owner and mode: chown clears a file capability.
	if err := restoreXattrs(r.gfs, p, target); err != nil {
		return r.fail(p, err)
	}
	r.rep.restored++
	return nil
}

// dir restores a directory and everything below it.
func (r *restorer) dir(p, target string, fi fs.FileInfo, a partinfo.Attr) error {
	if r.onPath[a.Ino] {
		return r.fail(p, fmt.Errorf("directory cycle: this directory (inode %d) is also one of its own ancestors; the filesystem is corrupt, not descended", a.Ino))
	}
	if err := os.Mkdir(target, 0o700); errors.Is(err, fs.ErrExist) {
		// Restore into an existing directory only: never onto a file
		// (its attributes would become the directory's) nor through a
		// symlink (the children would land wherever it points).
		if st, lerr := os.Lstat(target); lerr != nil {
			return r.fail(p, lerr)
		} else if !st.IsDir() {
			return r.fail(p, fmt.Errorf("%s exists and is not a directory (%s): a directory is not restored onto it; move it away or give another DEST", target, fileKind(st.Mode())))
		}
	} else if err != nil {
		return r.fail(p, err)
	}
	r.dirs = append(r.dirs, dirMeta{target, p, fi})
	r.rep.restored++
	ents, err := fs.ReadDir(r.gfs, p)
	if err != nil {
		if ferr := r.fail(p, fmt.Errorf("list directory: %w", err)); ferr != nil {
			return ferr
		}
	}
	r.onPath[a.Ino] = true
	defer delete(r.onPath, a.Ino)
	for _, e := range ents {
		child := path.Join(p, e.Name())
		local := restoreName(e.Name())
		if local != e.Name() {
			r.rep.renamed++
			fmt.Fprintf(r.opt.report, "RENAMED %s -> %s: the name is %d bytes, longer than %d\n", show(child), local, len(e.Name()), nameMax)
		}
		if err := r.walk(child, filepath.Join(target, local)); err != nil {
			return err
		}
	}
	return nil
}

// restoreName is the local name of a guest name: unchanged when it fits
// in nameMax bytes, else a deterministic shortening: the longest prefix
// that fits (cut at a character boundary), "~", the first 16 hex digits
// of the name's SHA-256, and the extension when it is short.
func restoreName(name string) string {
	if len(name) <= nameMax {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	tag := "~" + hex.EncodeToString(sum[:8])
	ext := path.Ext(name)
	if len(ext) > 16 || strings.ContainsRune(ext, utf8.RuneError) {
		ext = ""
	}
	keep := nameMax - len(tag) - len(ext)
	for keep > 0 && !utf8.RuneStart(name[keep]) {
		keep--
	}
	return name[:keep] + tag + ext
}

// file writes a regular file sparse, under its temporary name (the
// caller renames it into place): holes the guest reports and all-zero
// 64 KiB blocks stay holes. The target is sized first, so a size the
// local filesystem cannot hold fails at once (EFBIG).
func (r *restorer) file(target string, fi fs.FileInfo, a partinfo.Attr) (*partialFile, error) {
	out, err := createPartial(target, 0o600)
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if err := out.Truncate(size); err != nil {
		out.abort()
		return nil, fmt.Errorf("size the file to %d bytes: %w", size, err)
	}
	if err := r.copyData(out.File, a.Ino, size); err != nil {
		out.abort()
		return nil, err
	}
	return out, nil
}

// copyData copies the data ranges of ino (per SeekData/SeekHole; all of
// the file when the reader cannot tell) into out.
func (r *restorer) copyData(out *os.File, ino uint64, size int64) error {
	zero := make([]byte, 64<<10)
	for off := int64(0); off < size; {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		start, err := r.fsys.SeekData(ino, off)
		if errors.Is(err, partinfo.ErrNoData) {
			return nil
		}
		end := size
		if err != nil {
			start = off
		} else if h, herr := r.fsys.SeekHole(ino, start); herr == nil && h > start {
			end = min(h, size)
		}
		if start < off || start >= size {
			return nil
		}
		for pos := start; pos < end; {
			if err := r.ctx.Err(); err != nil {
				return err // Ctrl-C inside a large file
			}
			n, rerr := r.fsys.ReadAt(ino, r.buf[:min(int64(len(r.buf)), end-pos)], pos)
			for b := 0; b < n; b += len(zero) {
				chunk := r.buf[b:min(b+len(zero), n)]
				if !bytes.Equal(chunk, zero[:len(chunk)]) {
					if _, err := out.WriteAt(chunk, pos+int64(b)); err != nil {
						return err
					}
				}
			}
			pos += int64(n)
			if rerr != nil && (rerr != io.EOF || pos < end) {
				if rerr == io.EOF {
					rerr = fmt.Errorf("file ends at %d bytes, its size is %d", pos, size)
				}
				return fmt.Errorf("read at %d: %w", pos, rerr)
			}
			if n == 0 {
				return fmt.Errorf("read at %d: no progress", pos)
			}
		}
		off = end
	}
	return nil
}

// applyMeta sets owner (as root), mode and times; a symbolic link keeps
// its own times (AT_SYMLINK_NOFOLLOW) and has no mode of its own.
func applyMeta(target string, fi fs.FileInfo) error {
	a, ok := fi.Sys().(partinfo.Attr)
	if ok && os.Geteuid() == 0 {
		if err := os.Lchown(target, int(a.Uid), int(a.Gid)); err != nil {
			return err
		}
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		mode := fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		if err := os.Chmod(target, mode); err != nil {
			return err
		}
	}
	atime := fi.ModTime()
	if ok && !a.Atime.IsZero() {
		atime = a.Atime
	}
	ts := []unix.Timespec{timespec(atime), timespec(fi.ModTime())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// timespec converts a time as seconds and nanoseconds: time.UnixNano (and
// so os.Chtimes) wraps outside 1678-2262.
func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// devString renders a Linux device number (new_encode_dev form).
func devString(d uint32) string {
	return fmt.Sprintf("%d:%d", unix.Major(uint64(d)), unix.Minor(uint64(d)))
}

// fileKind names the type of a local file for messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeDevice != 0:
		return "a device node"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a directory"
}

// guestKind names the type of a guest entry for messages.
func guestKind(m fs.FileMode) string {
	if m.IsRegular() {
		return "file"
	}
	return strings.TrimPrefix(strings.TrimPrefix(fileKind(m), "a "), "an ")
}

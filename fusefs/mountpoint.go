package fusefs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Errors of mount point checks; callers can test for them with errors.Is.
var (
	ErrNoMountPoint   = errors.New("mount point does not exist")
	ErrNotDirectory   = errors.New("mount point is not a directory")
	ErrAlreadyMounted = errors.New("something is already mounted there")
	ErrNotMounted     = errors.New("nothing is mounted there")
	ErrBusy           = errors.New("mount point is busy")
)

// MountedError says that something is mounted at Dir already: a FUSE
// mount whose server has died (Stale), or a live mount of FSType from
// Source. It matches ErrAlreadyMounted; the CLI adds how to unmount it.
type MountedError struct {
	Dir            string
	FSType, Source string
	Stale          bool
}

func (e *MountedError) Error() string {
	if e.Stale {
		return fmt.Sprintf("%s: %v: a FUSE mount whose server has died is still there", e.Dir, ErrAlreadyMounted)
	}
	return fmt.Sprintf("%s: %v (%s from %s)", e.Dir, ErrAlreadyMounted, e.FSType, e.Source)
}

func (e *MountedError) Unwrap() error { return ErrAlreadyMounted }

// MountInfo is one line of /proc/self/mountinfo.
type MountInfo struct {
	Dir    string // mount point
	FSType string // e.g. fuse.cairn
	Source string
}

// FindMount returns the mount at dir, if any, from /proc/self/mountinfo.
func FindMount(dir string) (MountInfo, bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return MountInfo{}, false, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return MountInfo{}, false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var found MountInfo
	ok := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mi, good := parseMountInfo(sc.Text())
		if good && mi.Dir == abs {
			found, ok = mi, true // the last one is on top
		}
	}
	if err := sc.Err(); err != nil {
		return MountInfo{}, false, fmt.Errorf("read mount table: %w", err)
	}
	return found, ok, nil
}

// parseMountInfo parses "id parent maj:min root mountpoint opts [tags] - fstype source superopts".
func parseMountInfo(line string) (MountInfo, bool) {
	fields := strings.Fields(line)
	sep := -1
	for i, f := range fields {
		if f == "-" {
			sep = i
			break
		}
	}
	if sep < 5 || sep+2 >= len(fields) {
		return MountInfo{}, false
	}
	return MountInfo{Dir: unescapeMount(fields[4]), FSType: fields[sep+1], Source: unescapeMount(fields[sep+2])}, true
}

// unescapeMount undoes the octal escapes (\040 for space, ...) of the mount table.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// CheckMountPoint explains why dir cannot be a mount point: missing, not
// a directory, or already mounted.
func CheckMountPoint(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w (create it first: mkdir -p %s)", dir, ErrNoMountPoint, dir)
	}
	if errors.Is(err, syscall.ENOTCONN) {
		return &MountedError{Dir: dir, Stale: true}
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: %w", dir, ErrNotDirectory)
	}
	mi, mounted, err := FindMount(dir)
	if err != nil {
		return err
	}
	if mounted {
		return &MountedError{Dir: dir, FSType: mi.FSType, Source: mi.Source}
	}
	return nil
}

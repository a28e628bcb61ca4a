package xfs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// segment is one data range [Start, End) as the kernel's lseek reports it.
type segment struct{ Start, End int64 }

// expected is what the kernel reports for one path of the source tree.
type expected struct {
	Ino    uint64
	Mode   fs.FileMode
	Uid    uint32
	Gid    uint32
	Nlink  uint32
	Size   int64
	Mtime  time.Time
	Rdev   uint32
	SHA256 [32]byte
	Target string
	Data   []segment // data map of regular files (SEEK_DATA/SEEK_HOLE)
}

// walkSource records every path below root (relative, "." for root).
func walkSource(t testing.TB, root string) map[string]expected {
	t.Helper()
	out := map[string]expected{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "lost+found" {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := expected{
			Ino:   st.Ino,
			Mode:  info.Mode(),
			Uid:   st.Uid,
			Gid:   st.Gid,
			Nlink: uint32(st.Nlink),
			Size:  st.Size,
			Mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
			Rdev:  uint32(st.Rdev),
		}
		switch {
		case info.Mode().IsRegular():
			if e.SHA256, e.Data, err = hashAndMap(p); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walk source: %v", err)
	}
	return out
}

// hashAndMap returns a file's digest and its data segments per lseek.
// The map is taken first: reading unwritten extents fills the page cache,
// after which the kernel reports them as data.
func hashAndMap(p string) ([32]byte, []segment, error) {
	f, err := os.Open(p)
	if err != nil {
		return [32]byte{}, nil, err
	}
	defer f.Close()
	var segs []segment
	fd := int(f.Fd())
	for off := int64(0); ; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return [32]byte{}, nil, err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return [32]byte{}, nil, err
		}
		segs = append(segs, segment{start, end})
		off = end
	}
	st, err := f.Stat()
	if err != nil {
		return [32]byte{}, nil, err
	}
	sum, err := digest(st.Size(), segs, f.ReadAt)
	return sum, segs, err
}

// sparseDigestFrom is the size from which digest hashes only the data
// segments (with their offsets) instead of gigabytes of zeros.
const sparseDigestFrom = 1 << 30

// digest is the sha256 of a whole file, or for very large files the sha256
// of its data segments and their offsets.
func digest(size int64, segs []segment, readAt func([]byte, int64) (int, error)) ([32]byte, error) {
	h := sha256.New()
	if size < sparseDigestFrom {
		segs = []segment{{0, size}}
	}
	buf := make([]byte, min(1<<20, size+1))
	for _, s := range segs {
		fmt.Fprintf(h, "[%d,%d)", s.Start, s.End)
		for off := s.Start; off < s.End; {
			n, err := readAt(buf[:min(int64(len(buf)), s.End-off)], off)
			h.Write(buf[:n])
			off += int64(n)
			if err != nil && !(err == io.EOF && off == s.End) {
				return [32]byte{}, fmt.Errorf("read at %d: %w", off, err)
			}
			if n == 0 {
				return [32]byte{}, fmt.Errorf("read at %d: no progress", off)
			}
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

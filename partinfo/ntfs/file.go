package ntfs

import (
	"fmt"
	"io"
	"io/fs"

	"github.com/cairnbackup/cairn/partinfo"
	"www.velocidex.com/golang/go-ntfs/parser"
)

// Readlink returns the target of a symlink or junction reparse point
// (or an Interix symlink), with backslashes shown as slashes.
func (f *FS) Readlink(ino uint64) (string, error) {
	r, err := f.record(ino)
	if err != nil {
		return "", err
	}
	if !r.isLink() {
		return "", fmt.Errorf("MFT record %d: %w", ino, partinfo.ErrNotSymlink)
	}
	return r.linkTarget, nil
}

// openStream returns the unnamed $DATA stream of regular file ino.
func (f *FS) openStream(ino uint64) (stream, error) {
	var s stream
	err := f.guard(fmt.Sprintf("open data of %d", ino), func() error {
		if c, ok := f.streams[ino]; ok {
			s = c
			return nil
		}
		rec, err := f.recordLocked(ino)
		if err != nil {
			return err
		}
		if rec.isDir || rec.isLink() {
			return fmt.Errorf("MFT record %d: %w", ino, partinfo.ErrNotRegular)
		}
		s.size = rec.size
		if rec.hasData && rec.size > 0 {
			m, err := f.ctx.GetMFT(int64(ino))
			if err != nil {
				return fmt.Errorf("MFT record %d: %v: %w", ino, err, partinfo.ErrCorrupt)
			}
			r, err := parser.OpenStream(f.ctx, m, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, "")
			if err != nil {
				return fmt.Errorf("open $DATA of %d: %v: %w", ino, err, partinfo.ErrCorrupt)
			}
			s.r = r
		}
		if len(f.streams) >= cacheLimit {
			clear(f.streams)
		}
		f.streams[ino] = s
		return nil
	})
	return s, err
}

// ReadAt reads a file's bytes; holes and the uninitialised tail read as zeros.
func (f *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	s, err := f.openStream(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d: %w", off, fs.ErrInvalid)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), s.size-off)]
	done := 0
	err = f.guard(fmt.Sprintf("read %d at %d", ino, off), func() error {
		for done < len(want) {
			n, err := s.r.ReadAt(want[done:], off+int64(done))
			done += n
			if err != nil && err != io.EOF {
				return fmt.Errorf("read data of %d at %d: %w", ino, off+int64(done), err)
			}
			if n == 0 {
				// Past the last run but inside the size: NTFS reads zeros.
				clear(want[done:])
				done = len(want)
			}
		}
		return nil
	})
	if err != nil {
		return done, err
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// ranges returns the data/hole map of a file, clipped to its size.
func (f *FS) ranges(ino uint64) ([]parser.Range, int64, error) {
	s, err := f.openStream(ino)
	if err != nil {
		return nil, 0, err
	}
	if s.r == nil {
		return nil, s.size, nil
	}
	var rs []parser.Range
	err = f.guard(fmt.Sprintf("map %d", ino), func() error {
		rs = s.r.Ranges()
		return nil
	})
	return rs, s.size, err
}

// SeekData returns the first offset >= off inside a non-sparse range.
func (f *FS) SeekData(ino uint64, off int64) (int64, error) {
	rs, size, err := f.ranges(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 || off >= size {
		return 0, partinfo.ErrNoData
	}
	covered := int64(0)
	for _, r := range rs {
		end := r.Offset + r.Length
		covered = max(covered, end)
		if r.IsSparse || end <= off {
			continue
		}
		if at := max(off, r.Offset); at < size {
			return at, nil
		}
	}
	if off >= covered {
		return off, nil // not mapped by runs: treat as data
	}
	return 0, partinfo.ErrNoData
}

// SeekHole returns the first offset >= off inside a sparse range, or the
// file size when none follows; like lseek, an offset at or past the end
// gives ErrNoData.
func (f *FS) SeekHole(ino uint64, off int64) (int64, error) {
	rs, size, err := f.ranges(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 || off >= size {
		return 0, partinfo.ErrNoData
	}
	for _, r := range rs {
		if r.IsSparse && r.Offset+r.Length > off {
			return min(max(off, r.Offset), size), nil
		}
	}
	return size, nil
}

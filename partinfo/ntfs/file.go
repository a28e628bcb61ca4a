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
			if rec.resident {
				if s.res, err = f.residentData(m, rec.size); err != nil {
					return fmt.Errorf("MFT record %d: %w", ino, err)
				}
			} else if s.data, err = f.newDataStream(ino, m); err != nil {
				return err
			}
		}
		if len(f.streams) >= cacheLimit {
			clear(f.streams)
		}
		f.streams[ino] = s
		return nil
	})
	return s, err
}

// residentData returns the bytes of a resident unnamed $DATA attribute.
func (f *FS) residentData(m *parser.MFT_ENTRY, size int64) ([]byte, error) {
	for _, a := range m.EnumerateAttributes(f.ctx) {
		if a.Type().Value != parser.ATTR_TYPE_DATA || a.Name() != "" || !a.IsResident() {
			continue
		}
		if int64(a.Content_size()) < size || size > int64(a.Length()) {
			return nil, fmt.Errorf("resident $DATA of %d bytes holds only %d: %w", size, a.Content_size(), partinfo.ErrCorrupt)
		}
		b := make([]byte, size)
		if n, _ := a.Data(f.ctx).ReadAt(b, 0); int64(n) != size {
			return nil, fmt.Errorf("resident $DATA cut short at %d of %d bytes: %w", n, size, partinfo.ErrCorrupt)
		}
		return b, nil
	}
	return nil, fmt.Errorf("resident $DATA vanished: %w", partinfo.ErrCorrupt)
}

// ReadAt reads a file's bytes; holes and the uninitialised tail read as
// zeros. A read the volume cannot satisfy (a run past its end, a short
// read, a corrupt compression unit) is an error, never zeros.
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
	switch {
	case s.data != nil:
		done, err = s.data.ReadAt(want, off)
		if err != nil {
			return done, fmt.Errorf("read data of MFT record %d at %d: %w", ino, off+int64(done), err)
		}
	case s.res != nil:
		done = copy(want, s.res[off:])
	default:
		clear(want)
		done = len(want)
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
	if s.data == nil {
		if s.res != nil {
			return []parser.Range{{Offset: 0, Length: s.size}}, s.size, nil
		}
		return nil, s.size, nil
	}
	return s.data.ranges(), s.size, nil
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

package ext4

import (
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/partinfo"
)

// maxReadChunk bounds a single ReadAt issued to the underlying reader.
const maxReadChunk = 8 << 20

// readFull reads len(p) bytes at off (relative to the filesystem start),
// as the filesystem stands after replaying its journal.
func (f *FS) readFull(p []byte, off int64) error {
	if err := f.readRaw(p, off); err != nil {
		return err
	}
	if f.journal != nil {
		return f.journal.apply(f, p, off)
	}
	return nil
}

// readRaw reads len(p) bytes at off as they are on disk.
func (f *FS) readRaw(p []byte, off int64) error {
	if off < 0 || (f.size > 0 && off+int64(len(p)) > f.size) {
		return fmt.Errorf("read %d bytes at %d beyond the partition (%d bytes): %w", len(p), off, f.size, partinfo.ErrCorrupt)
	}
	n, err := f.r.ReadAt(p, f.off+off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), f.off+off, err)
}

// readContent reads an inode's data (regular file, directory or slow
// symlink) at off. It returns io.EOF when the read reaches the end.
func (f *FS) readContent(n *inode, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if n.flags&flagEncrypt != 0 {
		return 0, fmt.Errorf("inode %d is encrypted", n.ino)
	}
	if off >= n.size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := n.size - off; int64(want) > rest {
		want = int(rest)
	}
	var err error
	if n.flags&flagInlineData != 0 {
		err = f.readInline(n, p[:want], off)
	} else {
		err = f.readMapped(n, p[:want], off)
	}
	if err != nil {
		return 0, err
	}
	if want < len(p) {
		return want, io.EOF
	}
	return want, nil
}

func (f *FS) readInline(n *inode, p []byte, off int64) error {
	data, err := inlineContent(n)
	if err != nil {
		return fmt.Errorf("inline data of inode %d: %w", n.ino, err)
	}
	copy(p, data[off:])
	return nil
}

// readMapped fills p (which lies inside the file) from the block map,
// issuing one underlying read per physically contiguous run.
func (f *FS) readMapped(n *inode, p []byte, off int64) error {
	m, err := f.fileMapOf(n)
	if err != nil {
		return err
	}
	bs := f.sb.blockSize
	end := off + int64(len(p))
	pos := off
	i := m.find(uint64(pos / bs))
	for pos < end {
		lb := uint64(pos / bs)
		for i < len(m.runs) && m.runs[i].logical+m.runs[i].length <= lb {
			i++
		}
		dst := p[pos-off:]
		if i >= len(m.runs) || m.runs[i].logical > lb {
			// Hole up to the next run (or the end).
			holeEnd := end
			if i < len(m.runs) {
				holeEnd = min(end, int64(m.runs[i].logical)*bs)
			}
			clear(dst[:holeEnd-pos])
			pos = holeEnd
			continue
		}
		r := m.runs[i]
		runEnd := min(end, int64(r.logical+r.length)*bs)
		chunk := dst[:runEnd-pos]
		if len(chunk) > maxReadChunk {
			chunk = chunk[:maxReadChunk]
		}
		if r.unwritten {
			clear(chunk)
		} else {
			phys := int64(r.physical)*bs + (pos - int64(r.logical)*bs)
			if err := f.readFull(chunk, phys); err != nil {
				return fmt.Errorf("inode %d data at %d: %w", n.ino, pos, err)
			}
		}
		pos += int64(len(chunk))
	}
	return nil
}

// seek implements SeekData (wantData) and SeekHole over the block map.
func (f *FS) seek(n *inode, off int64, wantData bool) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= n.size {
		return 0, fmt.Errorf("offset %d at or beyond size %d: %w", off, n.size, partinfo.ErrNoData)
	}
	if n.flags&flagInlineData != 0 {
		if wantData {
			return off, nil
		}
		return n.size, nil
	}
	m, err := f.fileMapOf(n)
	if err != nil {
		return 0, err
	}
	bs := f.sb.blockSize
	pos := off
	for i := m.find(uint64(off / bs)); pos < n.size; i++ {
		var start, stop int64 // next data stretch [start, stop)
		if i >= len(m.runs) {
			start, stop = n.size, n.size
		} else {
			start = int64(m.runs[i].logical) * bs
			stop = int64(m.runs[i].logical+m.runs[i].length) * bs
		}
		isData := i < len(m.runs) && !m.runs[i].unwritten
		if pos < start {
			// pos is in a hole.
			if !wantData {
				return pos, nil
			}
			pos = start
		}
		if pos >= n.size {
			break
		}
		if isData && wantData {
			return pos, nil
		}
		if !isData && !wantData {
			return pos, nil
		}
		pos = max(pos, stop)
	}
	if wantData {
		return 0, fmt.Errorf("no data after %d: %w", off, partinfo.ErrNoData)
	}
	return n.size, nil
}

package esxsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// SyncFromImage makes the disk's content equal to the raw image at
// imagePath (which must not be larger than the disk; the rest of the disk
// is zeroed), writing only the BlockSize blocks that differ, as tracked
// guest writes. It returns the extents written. Tests build a filesystem
// image with real tools, change it, and sync it in, so that CBT reports
// exactly the blocks the change touched.
func (g *GuestWriter) SyncFromImage(disk int, imagePath string) ([]Extent, error) {
	s := g.sim
	img, err := os.Open(imagePath)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer img.Close()
	st, err := img.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat image: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.diskLocked(g.vm, disk)
	if err != nil {
		return nil, err
	}
	if st.Size() > d.size {
		return nil, fmt.Errorf("image %s (%d bytes) is larger than disk %s (%d bytes)", imagePath, st.Size(), d.dsPath, d.size)
	}
	f, err := os.OpenFile(d.flatPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk %s: %w", d.dsPath, err)
	}
	defer f.Close()
	want := make([]byte, BlockSize)
	have := make([]byte, BlockSize)
	var out []Extent
	for off := int64(0); off < d.size; off += BlockSize {
		n := min(BlockSize, d.size-off)
		if err := readFull(img, want[:n], off, st.Size()); err != nil {
			return out, fmt.Errorf("read image at %d: %w", off, err)
		}
		if err := readFull(f, have[:n], off, d.size); err != nil {
			return out, fmt.Errorf("read disk %s at %d: %w", d.dsPath, off, err)
		}
		if bytes.Equal(want[:n], have[:n]) {
			continue
		}
		if _, err := f.WriteAt(want[:n], off); err != nil {
			return out, fmt.Errorf("write disk %s at %d: %w", d.dsPath, off, err)
		}
		d.track.mark(off, n)
		s.record(JournalEntry{Op: OpWrite, VM: g.vm, Disk: disk, Offset: off, Length: n})
		if k := len(out) - 1; k >= 0 && out[k].Offset+out[k].Length == off {
			out[k].Length += n
		} else {
			out = append(out, Extent{Offset: off, Length: n})
		}
	}
	return out, nil
}

// readFull fills p from r at off; bytes at or past size read as zeros.
func readFull(r io.ReaderAt, p []byte, off, size int64) error {
	clear(p)
	if off >= size {
		return nil
	}
	n := min(int64(len(p)), size-off)
	_, err := r.ReadAt(p[:n], off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

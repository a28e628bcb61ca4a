package blockmap

import (
	"context"
	"fmt"
	"io"
	"os"
)

const exportChunk = 4 << 20

// ExportSparse writes the disk to f as a raw image: data extents are
// written at their offsets, holes are left as holes, and f is truncated to
// the disk's size. f must be a regular file (it is truncated first).
func (dr *DiskReader) ExportSparse(ctx context.Context, f *os.File, progress func(done int64)) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("export to %s: %w", f.Name(), err)
	}
	buf := make([]byte, exportChunk)
	var done int64
	for _, e := range dr.DataExtents() {
		if err := dr.copyExtent(ctx, f, buf, e, &done, progress); err != nil {
			return err
		}
	}
	if err := f.Truncate(dr.Size()); err != nil {
		return fmt.Errorf("export to %s: %w", f.Name(), err)
	}
	return nil
}

// copyExtent writes the disk's extent e to f at its offset through buf,
// adding what it wrote to *done and telling progress.
func (dr *DiskReader) copyExtent(ctx context.Context, f *os.File, buf []byte, e Extent, done *int64, progress func(done int64)) error {
	for off := e.Offset; off < e.Offset+e.Length; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), e.Offset+e.Length-off)
		if _, err := dr.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return fmt.Errorf("export: %w", err)
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("export to %s: %w", f.Name(), err)
		}
		off += n
		*done += n
		if progress != nil {
			progress(*done)
		}
	}
	return nil
}

// ExportStream writes the whole disk to w, holes as zeros (for pipes).
func (dr *DiskReader) ExportStream(ctx context.Context, w io.Writer, progress func(done int64)) error {
	buf := make([]byte, exportChunk)
	for off := int64(0); off < dr.Size(); {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), dr.Size()-off)
		if _, err := dr.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return fmt.Errorf("export: %w", err)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("export: write: %w", err)
		}
		off += n
		if progress != nil {
			progress(off)
		}
	}
	return nil
}

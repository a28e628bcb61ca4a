package copier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cairnbackup/cairn/blockmap"
)

// BlockWriter is what Copy writes to (a *blockmap.DiskWriter).
type BlockWriter interface {
	BlockSize() int
	Size() int64
	WriteBlock(idx int64, data []byte) error
	AddBytesRead(n int64)
}

// multiBlockWriter stores runs of blocks with few writes (*blockmap.DiskWriter).
type multiBlockWriter interface {
	WriteBlocks(idx int64, data []byte) error
}

// Options tune Copy.
type Options struct {
	// Workers read and hash in parallel; 0 means max(8, 2 x GOMAXPROCS):
	// more reads in flight than cores, since small CBT extents wait on I/O.
	Workers int
	// ChunkSize is the size of one read; rounded to whole blocks; 0 means
	// 4 MiB. Reads of a FileReader and writes of delta images bypass the
	// page cache, so larger requests mean fewer system calls (each one is
	// costly in a virtual machine) without copying through the CPU cache;
	// readers that go through the page cache may prefer 1 MiB. Chunks
	// end on multiples of ChunkSize (an extent's first one may be
	// shorter), and so do the delta image's extents.
	ChunkSize int
	// Progress is called (from several goroutines) with bytes just read.
	Progress func(n int64)
}

// Align rounds extents out to whole blocks, clips them to size, sorts and
// merges them.
func Align(extents []blockmap.Extent, blockSize int, size int64) []blockmap.Extent {
	bs := int64(blockSize)
	var out []blockmap.Extent
	for _, e := range extents {
		if e.Length <= 0 || e.Offset >= size || e.Offset < 0 {
			continue
		}
		start := e.Offset / bs * bs
		end := min((e.Offset+e.Length+bs-1)/bs*bs, size)
		out = append(out, blockmap.Extent{Offset: start, Length: end - start})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	merged := out[:0]
	for _, e := range out {
		if n := len(merged); n > 0 && e.Offset <= merged[n-1].Offset+merged[n-1].Length {
			if end := e.Offset + e.Length; end > merged[n-1].Offset+merged[n-1].Length {
				merged[n-1].Length = end - merged[n-1].Offset
			}
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// Total is the number of bytes the extents cover.
func Total(extents []blockmap.Extent) int64 {
	var n int64
	for _, e := range extents {
		n += e.Length
	}
	return n
}

// Copy reads the extents (block aligned: use Align) from src and writes
// every block to w. It returns the bytes read. The first error stops all
// workers.
func Copy(ctx context.Context, src io.ReaderAt, w BlockWriter, extents []blockmap.Extent, opts Options) (int64, error) {
	bs := int64(w.BlockSize())
	chunk := int64(opts.ChunkSize)
	if chunk <= 0 {
		chunk = 4 << 20
	}
	chunk = max(chunk/bs, 1) * bs
	// A buffer larger than the largest extent is never filled: the
	// scattered blocks of an incremental need 64 KiB each, not 4 MiB (16
	// workers would clear and fault in 64 MiB for nothing).
	var longest int64
	for _, e := range extents {
		longest = max(longest, e.Length)
	}
	chunk = min(chunk, max(longest, bs))
	workers := opts.Workers
	if workers <= 0 {
		workers = max(8, 2*runtime.GOMAXPROCS(0))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan blockmap.Extent, workers)
	go func() {
		defer close(jobs)
		for _, e := range extents {
			if e.Offset%bs != 0 {
				cancel(fmt.Errorf("extent at %d is not block aligned", e.Offset))
				return
			}
			// Chunks end on multiples of the chunk size (the first one
			// may be short), so the delta image's extents do too: a
			// page-cache folio of up to 2 MiB that a later read fills
			// then never straddles two of them, which would make ext4
			// read it through buffer heads (docs/performance-notes.md,
			// #18).
			end := e.Offset + e.Length
			for off := e.Offset; off < end; {
				n := min(chunk-off%chunk, end-off)
				select {
				case jobs <- blockmap.Extent{Offset: off, Length: n}:
				case <-ctx.Done():
					return
				}
				off += n
			}
		}
	}()
	var read atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf, release := chunkBuffer(int(chunk))
			defer release()
			for j := range jobs {
				if ctx.Err() != nil {
					return
				}
				if err := copyChunk(src, w, buf[:j.Length], j.Offset); err != nil {
					cancel(err)
					return
				}
				read.Add(j.Length)
				w.AddBytesRead(j.Length)
				if opts.Progress != nil {
					opts.Progress(j.Length)
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return read.Load(), err
	}
	return read.Load(), nil
}

func copyChunk(src io.ReaderAt, w BlockWriter, buf []byte, off int64) error {
	n, err := src.ReadAt(buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(buf)) {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("read %d bytes at offset %d: source ended after %d bytes (did it shrink during the backup?)", len(buf), off, off+int64(n))
		}
		return fmt.Errorf("read %d bytes at offset %d: %w", len(buf), off, err)
	}
	bs := int64(w.BlockSize())
	if mw, ok := w.(multiBlockWriter); ok {
		return mw.WriteBlocks(off/bs, buf)
	}
	for p := int64(0); p < int64(len(buf)); p += bs {
		idx := (off + p) / bs
		l := min(bs, int64(len(buf))-p)
		if err := w.WriteBlock(idx, buf[p:p+l]); err != nil {
			return err
		}
	}
	return nil
}

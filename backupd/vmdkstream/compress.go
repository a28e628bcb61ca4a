package vmdkstream

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zlib"
)

// batchGrains is how many consecutive grains one worker reads (with one
// ReadAt) and compresses at a time: 1 MiB of disk.
const batchGrains = 16

// batch is a run of consecutive grains of one data extent.
type batch struct {
	first int64 // index of the first grain
	count int   // grains
	bytes int64 // disk bytes covered (the last grain may be partial)
	raw   []byte
	comp  bytes.Buffer
	ends  [batchGrains]int // end of each grain's deflated bytes in comp; -1: a zero grain
	err   error
	done  chan struct{}
}

// compressGrains reads the grains that data touches from r, drops those
// holding only zeros and deflates the others with o.Workers goroutines,
// then calls emit for each stored grain in disk order (grain index, disk
// bytes, deflated bytes; comp is valid only during the call). Reads and
// compression run ahead of emit by at most a few batches per worker.
func compressGrains(r io.ReaderAt, size int64, data []Extent, o Options, emit func(g, n int64, comp []byte) error) error {
	jobs := make(chan *batch)
	order := make(chan *batch, 2*o.Workers)
	stop := make(chan struct{})
	pool := sync.Pool{New: func() any { return &batch{raw: make([]byte, batchGrains*GrainSize)} }}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // producer: batches in disk order, to the workers and to emit
		defer wg.Done()
		defer close(jobs)
		defer close(order)
		last := int64(-1) // last grain handed out
		for _, e := range data {
			if e.Length <= 0 {
				continue
			}
			end := (min(e.Offset+e.Length, size) + GrainSize - 1) / GrainSize
			for g := max(e.Offset/GrainSize, last+1); g < end; {
				b := pool.Get().(*batch)
				b.first, b.count, b.err, b.done = g, int(min(batchGrains, end-g)), nil, make(chan struct{})
				b.bytes = min(int64(b.count)*GrainSize, size-g*GrainSize)
				g += int64(b.count)
				last = g - 1
				select {
				case order <- b:
				case <-stop:
					return
				}
				select {
				case jobs <- b:
				case <-stop:
					return
				}
			}
		}
	}()
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zw, _ := zlib.NewWriterLevel(io.Discard, o.Level)
			for b := range jobs {
				b.err = compressBatch(r, zw, b)
				close(b.done)
			}
		}()
	}
	var err error
	for b := range order {
		<-b.done
		if err = b.err; err == nil {
			start := 0
			comp := b.comp.Bytes()
			for i := range b.count {
				end := b.ends[i]
				if end < 0 {
					continue
				}
				g := b.first + int64(i)
				n := min(int64(GrainSize), size-g*GrainSize)
				if err = emit(g, n, comp[start:end]); err != nil {
					break
				}
				start = end
			}
		}
		pool.Put(b)
		if err != nil {
			break
		}
	}
	close(stop)
	for range order { // let the producer see stop; wait for the workers
	}
	wg.Wait()
	return err
}

// compressBatch reads b's grains and deflates each non-zero grain into
// b.comp (the last grain of the disk is stored whole, zero-padded).
func compressBatch(r io.ReaderAt, zw *zlib.Writer, b *batch) error {
	off := b.first * GrainSize
	raw := b.raw[:int64(b.count)*GrainSize]
	if k, err := r.ReadAt(raw[:b.bytes], off); err != nil && (err != io.EOF || int64(k) < b.bytes) {
		return fmt.Errorf("vmdk stream: read offset %d: %w", off, err)
	}
	clear(raw[b.bytes:])
	b.comp.Reset()
	for i := range b.count {
		grain := raw[i*GrainSize : (i+1)*GrainSize]
		if isZero(grain) {
			b.ends[i] = -1
			continue
		}
		zw.Reset(&b.comp)
		if _, err := zw.Write(grain); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		b.ends[i] = b.comp.Len()
	}
	return nil
}

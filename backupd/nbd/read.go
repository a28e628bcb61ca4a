package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// ReadAt reads len(p) bytes at offset off. Like io.ReaderAt it returns
// io.EOF when the read reaches past the end of the export, together with
// the bytes that were there. Large reads are split into requests of at most
// MaxRequest bytes that run in parallel over the pool; unaligned reads are
// widened to the server's minimum block size.
func (c *Client) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd read at negative offset %d", off)
	}
	if off >= c.info.Size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if rest := c.info.Size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.readAligned(ctx, p, off); err != nil {
		return 0, err
	}
	return len(p), eof
}

// readAligned reads p at off. When the range is not aligned to the
// server's minimum block size, the partial first and last blocks go
// through a bounce buffer and the aligned middle is read in place. The
// range lies inside the export.
func (c *Client) readAligned(ctx context.Context, p []byte, off int64) error {
	bs := int64(c.info.BlockSize.Min)
	end := off + int64(len(p))
	head := (off + bs - 1) / bs * bs // first block boundary at or after off
	tail := end / bs * bs            // last block boundary at or before end
	if off == head && (end == tail || end == c.info.Size) {
		return c.readSplit(ctx, p, off)
	}
	if head >= tail { // inside one block, or across one boundary only
		return c.bounce(ctx, p, off)
	}
	if off < head {
		if err := c.bounce(ctx, p[:head-off], off); err != nil {
			return err
		}
	}
	if err := c.readSplit(ctx, p[head-off:tail-off], head); err != nil {
		return err
	}
	if tail < end {
		return c.bounce(ctx, p[tail-off:], tail)
	}
	return nil
}

// bounce reads p at off through a buffer widened to whole blocks.
func (c *Client) bounce(ctx context.Context, p []byte, off int64) error {
	bs := int64(c.info.BlockSize.Min)
	start := off / bs * bs
	aend := min((off+int64(len(p))+bs-1)/bs*bs, c.info.Size)
	buf := make([]byte, aend-start)
	if err := c.readSplit(ctx, buf, start); err != nil {
		return err
	}
	copy(p, buf[off-start:])
	return nil
}

// readSplit reads p at off in requests of at most maxReq bytes, several in
// flight at once. It stops at the first error.
func (c *Client) readSplit(ctx context.Context, p []byte, off int64) error {
	return c.split(ctx, p, off, int64(c.maxReq), c.readOne)
}

// split runs one(ctx, part, partOff) for every piece of p at off of at
// most chunk bytes (32 MiB when chunk is not positive), with up to the
// pool's in-flight limit of pieces at once. A single piece runs on the
// caller's goroutine. It stops at, and returns, the first error.
func (c *Client) split(ctx context.Context, p []byte, off, chunk int64, one func(context.Context, []byte, int64) error) error {
	if chunk <= 0 {
		chunk = 32 << 20
	}
	n := (int64(len(p)) + chunk - 1) / chunk
	if n <= 1 {
		return one(ctx, p, off)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	workers := min(n, int64(max(1, cap(c.sem))))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				lo := i * chunk
				hi := min(lo+chunk, int64(len(p)))
				if err := one(ctx, p[lo:hi], off+lo); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// readOne reads p at off with one NBD_CMD_READ, with retries.
func (c *Client) readOne(ctx context.Context, p []byte, off int64) error {
	_, err := c.do(ctx, func(*conn) (*request, error) {
		r := newRequest(cmdRead, uint64(off), uint32(len(p)))
		r.buf = p
		return r, nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("nbd read offset %d length %d: %w", off, len(p), err)
	}
	return nil
}

// ReaderAt adapts the client to io.ReaderAt; every read uses ctx.
func (c *Client) ReaderAt(ctx context.Context) *ReaderAt {
	return &ReaderAt{c: c, ctx: ctx}
}

// ReaderAt is an io.ReaderAt over a Client with a fixed context.
type ReaderAt struct {
	c   *Client
	ctx context.Context
}

// ReadAt implements io.ReaderAt.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.c.ReadAt(r.ctx, p, off) }

// Size is the export size in bytes.
func (r *ReaderAt) Size() int64 { return r.c.Size() }

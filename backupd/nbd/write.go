package nbd

import (
	"context"
	"errors"
	"fmt"
)

// Write-side commands (NBD protocol, "Request types").
const (
	cmdWrite uint16 = 1
	cmdFlush uint16 = 3
)

// ErrReadOnly means the export refuses writes (the server was started
// read-only, e.g. with nbdkit --readonly or qemu-nbd -r).
var ErrReadOnly = errors.New("nbd export is read-only")

// WriteAt writes p at off with NBD_CMD_WRITE requests of at most
// MaxRequest bytes, spread over the client's connections; each request is
// retried like a read (a write of the same bytes at the same offset is
// idempotent). It returns the first error.
func (c *Client) WriteAt(ctx context.Context, p []byte, off int64) error {
	if c.ReadOnly() {
		return ErrReadOnly
	}
	if off < 0 || off+int64(len(p)) > c.Size() {
		return fmt.Errorf("nbd write [%d,+%d) outside the export of %d bytes", off, len(p), c.Size())
	}
	return c.split(ctx, p, off, int64(c.MaxRequest()), c.writeOne)
}

func (c *Client) writeOne(ctx context.Context, p []byte, off int64) error {
	_, err := c.do(ctx, func(*conn) (*request, error) {
		r := newRequest(cmdWrite, uint64(off), uint32(len(p)))
		r.payload = p
		return r, nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("nbd write offset %d length %d: %w", off, len(p), err)
	}
	return nil
}

// Flush asks the server to make every completed write durable: one
// NBD_CMD_FLUSH. The client opens several connections only to a server
// that advertises NBD_FLAG_CAN_MULTI_CONN, which promises that a flush on
// any connection covers the writes completed on all of them (a flush per
// connection would make the server sync the same file again for
// nothing); a server that does not advertise flush needs none.
func (c *Client) Flush(ctx context.Context) error {
	if c.Flags()&FlagSendFlush == 0 {
		return nil
	}
	if _, err := c.do(ctx, func(*conn) (*request, error) { return newRequest(cmdFlush, 0, 0), nil }); err != nil {
		return fmt.Errorf("nbd flush: %w", err)
	}
	return nil
}

// cmdWriteZeroes is NBD_CMD_WRITE_ZEROES.
const cmdWriteZeroes uint16 = 6

// WriteZeroes makes [off, off+n) read as zeros: NBD_CMD_WRITE_ZEROES where
// the server offers it (no payload travels), else writes of a zero buffer.
func (c *Client) WriteZeroes(ctx context.Context, off, n int64) error {
	return c.writeZeroes(ctx, off, n, 0)
}

// cmdFlagNoHole is NBD_CMD_FLAG_NO_HOLE: the server must not punch a hole
// for a write-zeroes request (the range stays allocated).
const cmdFlagNoHole uint16 = 1 << 1

// WriteZeroesAllocated is WriteZeroes with NBD_CMD_FLAG_NO_HOLE: the range
// reads as zeros and stays allocated (the server may not deallocate it).
func (c *Client) WriteZeroesAllocated(ctx context.Context, off, n int64) error {
	return c.writeZeroes(ctx, off, n, cmdFlagNoHole)
}

func (c *Client) writeZeroes(ctx context.Context, off, n int64, flags uint16) error {
	if c.ReadOnly() {
		return ErrReadOnly
	}
	if off < 0 || n < 0 || off+n > c.Size() {
		return fmt.Errorf("nbd write zeroes [%d,+%d) outside the export of %d bytes", off, n, c.Size())
	}
	const step = 1 << 30
	if c.Flags()&FlagSendWriteZeroes != 0 {
		for n > 0 {
			k := min(n, step)
			_, err := c.do(ctx, func(*conn) (*request, error) {
				r := newRequest(cmdWriteZeroes, uint64(off), uint32(k))
				r.flags = flags
				return r, nil
			})
			if err != nil {
				return fmt.Errorf("nbd write zeroes offset %d length %d: %w", off, k, err)
			}
			off, n = off+k, n-k
		}
		return nil
	}
	buf := make([]byte, min(n, 4<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if err := c.WriteAt(ctx, buf[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

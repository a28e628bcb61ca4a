package nbd

import (
	"context"
	"fmt"
)

// maxStatusRequest bounds the length of one NBD_CMD_BLOCK_STATUS request.
const maxStatusRequest = 1 << 30

// BlockStatus returns the extents of [off, off+length) in the metadata
// context name (base:allocation, qemu:dirty-bitmap:NAME, ...), asking the
// server as many times as needed to cover the range. Adjacent extents with
// the same flags are merged; the last one is clipped to the range. The
// range is clipped to the export.
func (c *Client) BlockStatus(ctx context.Context, off, length int64, name string) ([]Extent, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("nbd block status: bad range offset %d length %d", off, length)
	}
	if !c.HasContext(name) {
		return nil, fmt.Errorf("nbd block status %q: %w (negotiated: %v)", name, ErrContextNotNegotiated, c.contextNames())
	}
	end := min(off+length, c.info.Size)
	var out []Extent
	for cur := off; cur < end; {
		n := min(end-cur, maxStatusRequest)
		req, err := c.do(ctx, func(cn *conn) (*request, error) {
			id, ok := cn.info.MetaContexts[name]
			if !ok {
				return nil, fmt.Errorf("%w on a reconnected connection: %q", ErrContextNotNegotiated, name)
			}
			r := newRequest(cmdBlockStatus, uint64(cur), uint32(n))
			r.ctxID = id
			return r, nil
		})
		if err != nil {
			return nil, fmt.Errorf("nbd block status %q offset %d length %d: %w", name, cur, n, err)
		}
		next := cur
		for _, e := range req.extents {
			if e.Offset >= end {
				break
			}
			e.Length = min(e.Length, end-e.Offset)
			out = appendExtent(out, e)
			next = e.End()
		}
		if next <= cur {
			return nil, fmt.Errorf("nbd block status %q offset %d: %w", name, cur, protocolErrorf("no progress"))
		}
		cur = next
	}
	return out, nil
}

// AllocatedExtents lists the areas of the whole export that are not both
// a hole and zero in base:allocation: the areas a backup has to read.
// Extents keep their flags (an allocated zero area has StateZero).
func (c *Client) AllocatedExtents(ctx context.Context) ([]Extent, error) {
	all, err := c.BlockStatus(ctx, 0, c.info.Size, ContextBaseAllocation)
	if err != nil {
		return nil, err
	}
	var out []Extent
	for _, e := range all {
		if e.Flags&(StateHole|StateZero) != StateHole|StateZero {
			out = appendExtent(out, e)
		}
	}
	return out, nil
}

// DirtyExtents lists the dirty areas of the whole export in the qemu
// dirty bitmap of that name (negotiated with Options.MetaContexts
// "qemu:dirty-bitmap:"+bitmap). Adjacent dirty areas are merged.
func (c *Client) DirtyExtents(ctx context.Context, bitmap string) ([]Extent, error) {
	all, err := c.BlockStatus(ctx, 0, c.info.Size, ContextDirtyBitmapPrefix+bitmap)
	if err != nil {
		return nil, err
	}
	var out []Extent
	for _, e := range all {
		if e.Dirty() {
			out = appendExtent(out, Extent{Offset: e.Offset, Length: e.Length, Flags: StateDirty})
		}
	}
	return out, nil
}

// contextNames lists the negotiated metadata contexts.
func (c *Client) contextNames() []string {
	var names []string
	for n := range c.info.MetaContexts {
		names = append(names, n)
	}
	return names
}

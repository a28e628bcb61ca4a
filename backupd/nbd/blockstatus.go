package nbd

import (
	"context"
	"fmt"
)

// maxStatusRequest bounds the length of one NBD_CMD_BLOCK_STATUS request.
const maxStatusRequest = 1 << 30

// MaxExtents bounds the extent lists the client builds from block status
// replies (24 bytes each: 24 MiB). A server may describe an export in as
// many extents as it likes (a reply of alternating 1-byte extents is
// legal); BlockStatus refuses more than this, and AllocatedExtents and
// DirtyExtents widen their areas instead (see extentSet).
const MaxExtents = 1 << 20

// BlockStatus returns the extents of [off, off+length) in the metadata
// context name (base:allocation, qemu:dirty-bitmap:NAME, ...), asking the
// server as many times as needed to cover the range. Adjacent extents with
// the same flags are merged; the last one is clipped to the range. The
// range is clipped to the export. More than MaxExtents merged extents is
// an error (ErrProtocol).
func (c *Client) BlockStatus(ctx context.Context, off, length int64, name string) ([]Extent, error) {
	var out []Extent
	err := c.blockStatusEach(ctx, off, length, name, func(e Extent) error {
		out = appendExtent(out, e)
		if len(out) > MaxExtents {
			return protocolErrorf("block status %q of [%d,+%d) has more than %d extents", name, off, length, MaxExtents)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// blockStatusEach calls fn with the extents of [off, off+length) in the
// metadata context name, in order, as the replies arrive: nothing but one
// reply is held in memory.
func (c *Client) blockStatusEach(ctx context.Context, off, length int64, name string, fn func(Extent) error) error {
	if off < 0 || length < 0 {
		return fmt.Errorf("nbd block status: bad range offset %d length %d", off, length)
	}
	if !c.HasContext(name) {
		return fmt.Errorf("nbd block status %q: %w (negotiated: %v)", name, ErrContextNotNegotiated, c.contextNames())
	}
	end := min(off+length, c.info.Size)
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
			return fmt.Errorf("nbd block status %q offset %d length %d: %w", name, cur, n, err)
		}
		next := cur
		for _, e := range req.extents {
			if e.Offset >= end {
				break
			}
			e.Length = min(e.Length, end-e.Offset)
			if err := fn(e); err != nil {
				return err
			}
			next = e.End()
		}
		if next <= cur {
			return fmt.Errorf("nbd block status %q offset %d: %w", name, cur, protocolErrorf("no progress"))
		}
		cur = next
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// AllocatedExtents lists the areas of the whole export that are not both
// a hole and zero in base:allocation: the areas a backup has to read.
// Extents keep their flags (an allocated zero area has StateZero). At most
// MaxExtents areas are returned: a server describing more separate areas
// gets its areas widened (see extentSet), which reads more than needed
// but never less.
func (c *Client) AllocatedExtents(ctx context.Context) ([]Extent, error) {
	s := extentSet{max: MaxExtents}
	err := c.blockStatusEach(ctx, 0, c.info.Size, ContextBaseAllocation, func(e Extent) error {
		if e.Flags&(StateHole|StateZero) != StateHole|StateZero {
			s.add(e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.granule > 0 {
		c.log.Warn("nbd server reported very many separate allocated areas; reading them in larger pieces", "granule", s.granule)
	}
	return clip(s.list, c.info.Size), nil
}

// DirtyExtents lists the dirty areas of the whole export in the qemu
// dirty bitmap of that name (negotiated with Options.MetaContexts
// "qemu:dirty-bitmap:"+bitmap). Adjacent dirty areas are merged; like
// AllocatedExtents, at most MaxExtents areas, widened when needed.
func (c *Client) DirtyExtents(ctx context.Context, bitmap string) ([]Extent, error) {
	s := extentSet{max: MaxExtents}
	err := c.blockStatusEach(ctx, 0, c.info.Size, ContextDirtyBitmapPrefix+bitmap, func(e Extent) error {
		if e.Dirty() {
			s.add(Extent{Offset: e.Offset, Length: e.Length, Flags: StateDirty})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.granule > 0 {
		c.log.Warn("nbd dirty bitmap has very many separate areas; reading them in larger pieces", "bitmap", bitmap, "granule", s.granule)
	}
	return clip(s.list, c.info.Size), nil
}

// extentSet collects extents arriving in order in at most max entries.
// Until the list would grow past max, adjacent extents with the same flags
// are merged and nothing else changes. Past it, every extent is widened to
// whole granules (4 KiB, doubled until the list fits) and extents that
// then touch are merged whatever their flags (a merged extent keeps only
// the flags all its parts had): reading more than asked is always safe
// for a backup, holding an unbounded list is not.
type extentSet struct {
	max     int
	granule int64 // 0 until the list overflowed
	list    []Extent
}

func (s *extentSet) add(e Extent) {
	if e.Length <= 0 {
		return
	}
	if s.granule == 0 {
		s.list = appendExtent(s.list, e)
		if len(s.list) <= s.max {
			return
		}
		s.granule = 4096 / 2
	} else {
		s.list = s.widenAppend(s.list, e)
		if len(s.list) <= s.max {
			return
		}
	}
	for len(s.list) > s.max {
		s.granule *= 2
		out := s.list[:0]
		for _, x := range s.list {
			out = s.widenAppend(out, x)
		}
		s.list = out
	}
}

// widenAppend rounds e out to whole granules and appends it to list,
// merging it into the last extent when they overlap or touch.
func (s *extentSet) widenAppend(list []Extent, e Extent) []Extent {
	g := s.granule
	start := e.Offset / g * g
	end := (e.End() + g - 1) / g * g
	if n := len(list); n > 0 && list[n-1].End() >= start {
		last := &list[n-1]
		last.Length = max(last.End(), end) - last.Offset
		last.Flags &= e.Flags
		return list
	}
	return append(list, Extent{Offset: start, Length: end - start, Flags: e.Flags})
}

// clip cuts the extents at size (widened ones may reach past the export).
func clip(list []Extent, size int64) []Extent {
	for len(list) > 0 && list[len(list)-1].Offset >= size {
		list = list[:len(list)-1]
	}
	if n := len(list); n > 0 && list[n-1].End() > size {
		list[n-1].Length = size - list[n-1].Offset
	}
	return list
}

// contextNames lists the negotiated metadata contexts.
func (c *Client) contextNames() []string {
	var names []string
	for n := range c.info.MetaContexts {
		names = append(names, n)
	}
	return names
}

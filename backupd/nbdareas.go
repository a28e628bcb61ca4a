package backupd

import (
	"context"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/blockmap"
)

// NBDDataAreas lists the areas of an NBD export a full backup has to read:
// what base:allocation marks as data (neither a hole nor reading as
// zeros), or the whole export when the server offers no block status.
func NBDDataAreas(ctx context.Context, c *nbd.Client) ([]blockmap.Extent, error) {
	if !c.HasContext(nbd.ContextBaseAllocation) {
		return []blockmap.Extent{{Offset: 0, Length: c.Size()}}, nil
	}
	ext, err := c.AllocatedExtents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]blockmap.Extent, 0, len(ext))
	for _, e := range ext {
		if !e.Zero() {
			out = append(out, blockmap.Extent{Offset: e.Offset, Length: e.Length})
		}
	}
	return out, nil
}

// NBDDirtyAreas lists the areas the qemu dirty bitmap of that name marks
// (negotiated with nbd.Options.MetaContexts
// nbd.ContextDirtyBitmapPrefix+bitmap).
func NBDDirtyAreas(ctx context.Context, c *nbd.Client, bitmap string) ([]blockmap.Extent, error) {
	ext, err := c.DirtyExtents(ctx, bitmap)
	if err != nil {
		return nil, err
	}
	out := make([]blockmap.Extent, len(ext))
	for i, e := range ext {
		out[i] = blockmap.Extent{Offset: e.Offset, Length: e.Length}
	}
	return out, nil
}

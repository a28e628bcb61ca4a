package backupd

import (
	"context"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/blockmap"
)

// NBDDataAreas lists the areas of an NBD export a full backup has to read
// (see source.NBDDataAreas).
func NBDDataAreas(ctx context.Context, c *nbd.Client) ([]blockmap.Extent, error) {
	return source.NBDDataAreas(ctx, c)
}

// NBDDirtyAreas lists the areas the qemu dirty bitmap of that name marks
// (see source.NBDDirtyAreas).
func NBDDirtyAreas(ctx context.Context, c *nbd.Client, bitmap string) ([]blockmap.Extent, error) {
	return source.NBDDirtyAreas(ctx, c, bitmap)
}

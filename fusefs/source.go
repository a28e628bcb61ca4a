package fusefs

import (
	"context"
	"io"

	"github.com/cairnbackup/cairn/blockmap"
)

// Source is what a mount shows: the local repository (Mount) or another
// store of recovery points of the same shape, such as a remote
// (MountSource). The tree does not know where bytes come from.
type Source interface {
	// Catalog lists every VM with its points, oldest first.
	Catalog(ctx context.Context) ([]blockmap.VMSummary, error)
	// CatalogSeq changes whenever the catalog may have changed.
	CatalogSeq() uint64
	// CatalogState is catalog.seq's content: the sequence number and the
	// recently deleted points, so that a read can tell whether its point
	// is gone without reading the catalog.
	CatalogState() (blockmap.CatalogState, error)
	// Dir is the repository directory whose catalog.seq is watched for
	// changes; "" means no watch (CatalogSeq is polled).
	Dir() string
	// BlockSize sizes read-around and reader memory estimates.
	BlockSize() int
	// Attachment reads a file kept with a point (Point.Attachments: the
	// VM's configuration, .vmx, .nvram), checked against its hash.
	Attachment(ctx context.Context, p blockmap.Point, name string) ([]byte, error)
	// OpenDisk opens one disk of one point.
	OpenDisk(ctx context.Context, p blockmap.Point, disk string) (Disk, error)
}

// Disk is one disk of one point: bytes and the data/hole map. Reads of
// damaged data fail (the mount answers EIO), never returning wrong bytes.
type Disk interface {
	io.ReaderAt
	// NextData and NextHole follow the lseek SEEK_DATA/SEEK_HOLE
	// contract, with blockmap.ErrNoData for ENXIO.
	NextData(off int64) (int64, error)
	NextHole(off int64) (int64, error)
	DataBytes() int64
	Close() error
}

// repoSource is a local repository as a Source.
type repoSource struct{ *blockmap.Repo }

func (s repoSource) OpenDisk(ctx context.Context, p blockmap.Point, disk string) (Disk, error) {
	dr, err := s.Repo.OpenDisk(ctx, p, disk)
	if err != nil {
		return nil, err
	}
	// Every read of the mount checks afterwards that the point is still
	// in the catalog and refuses the bytes otherwise (imgHandle.checkAlive,
	// pointReaderAt), so the reader need not stat catalog.seq as well.
	dr.CallerChecksDeleted()
	return dr, nil
}

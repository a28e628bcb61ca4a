package guestfind

import (
	"context"
	"io"

	"github.com/cairnbackup/cairn/blockmap"
)

// Source is where a VM's points and their disks are read from: the
// local repository (Local) or a remote (the CLI adapts
// blockmap/remote).
type Source interface {
	// Points lists the VM's points (any order); an unknown VM is an
	// error matching blockmap.ErrNotFound.
	Points(ctx context.Context, vm string) ([]blockmap.Point, error)
	// OpenDisk opens one disk of a point.
	OpenDisk(ctx context.Context, p blockmap.Point, disk string) (Disk, error)
}

// Disk is one disk of a point. A Disk that also has the DataRuns method
// of blockmap.DiskReader (which generation holds each block) lets a
// point be answered from the point before it when nothing it read
// changed; without it every point is read.
type Disk interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// dataRunner is the block identity of a local disk: which generation
// holds each block of BlockBytes bytes.
type dataRunner interface {
	DataRuns(fn func(first, n int64, gen uint32) bool)
	BlockBytes() int64
}

// Local is the local repository as a Source.
func Local(repo *blockmap.Repo) Source { return localSource{repo} }

type localSource struct{ repo *blockmap.Repo }

func (l localSource) Points(ctx context.Context, vm string) ([]blockmap.Point, error) {
	return l.repo.Points(ctx, vm)
}

func (l localSource) OpenDisk(ctx context.Context, p blockmap.Point, disk string) (Disk, error) {
	dr, err := l.repo.OpenDisk(ctx, p, disk)
	if err != nil {
		return nil, err
	}
	return localDisk{dr, int64(l.repo.BlockSize())}, nil
}

// localDisk is a local disk with the block size its DataRuns count in.
type localDisk struct {
	*blockmap.DiskReader
	bs int64
}

func (d localDisk) BlockBytes() int64 { return d.bs }

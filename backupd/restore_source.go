package backupd

import (
	"context"
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/blockmap"
)

// PointDisk is one disk of a point as a restore reads it: its bytes, its
// size and where its data is (the rest reads as zeros).
type PointDisk interface {
	io.ReaderAt
	io.Closer
	Size() int64
	DataExtents() []blockmap.Extent
}

// PointSource is where a restore reads a point's disks and attachments
// from when they are not in the local repository (an offsite remote).
type PointSource interface {
	Attachment(ctx context.Context, p blockmap.Point, name string) ([]byte, error)
	OpenPointDisk(ctx context.Context, p blockmap.Point, disk string) (PointDisk, error)
}

// openDisk opens a disk of p from RestoreOptions.Source, or from the
// repository when there is none. When only areas will be read and they
// are a small part of the disk (a quick rollback), only their blocks are
// looked up in the index instead of the disk's whole map.
func (j *restoreJob) openDisk(ctx context.Context, p blockmap.Point, name string, areas []blockmap.Extent) (PointDisk, error) {
	if _, ok := p.Disk(name); !ok && j.isEmptyDisk(name) {
		for _, d := range j.emptyDisks {
			if d.Name == name {
				return emptyDisk(d.Capacity), nil
			}
		}
	}
	if j.opts.Source != nil {
		return j.opts.Source.OpenPointDisk(ctx, p, name)
	}
	if d, ok := p.Disk(name); ok && areas != nil && copier.Total(areas) <= d.Size/areaReadLimit {
		return j.repo.OpenDiskAreas(ctx, p, name, areas)
	}
	dr, err := j.repo.OpenDisk(ctx, p, name)
	if err != nil {
		return nil, err
	}
	return dr, nil
}

// areaReadLimit: areas up to 1/areaReadLimit of a disk are read through
// an area reader (a seek per block); more walk the whole map (one pass).
const areaReadLimit = 8

// attachmentReader reads a point's attachments: the repository or a
// PointSource.
type attachmentReader interface {
	Attachment(ctx context.Context, p blockmap.Point, name string) ([]byte, error)
}

// sourceVMConfig reads p's recorded VM configuration from src.
func sourceVMConfig(ctx context.Context, src attachmentReader, p blockmap.Point) (*vmconfig.Config, error) {
	if _, ok := p.Attachment(vmconfig.AttachmentConfig); !ok {
		return nil, fmt.Errorf("point %s of %s: %w", p.ID, p.VM, ErrNoVMConfig)
	}
	data, err := src.Attachment(ctx, p, vmconfig.AttachmentConfig)
	if err != nil {
		return nil, fmt.Errorf("point %s of %s: VM configuration: %w", p.ID, p.VM, err)
	}
	cfg, err := vmconfig.ParseRecorded(data)
	if err != nil {
		return nil, fmt.Errorf("point %s of %s: %s: %w", p.ID, p.VM, vmconfig.AttachmentConfig, err)
	}
	return cfg, nil
}

package backupd

import (
	"context"
	"fmt"
	"os"

	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// fileSource reads a local raw file or block device.
type fileSource struct {
	*os.File
	size    int64
	onClose func() error
}

func (f *fileSource) Allocated(context.Context) ([]blockmap.Extent, error) {
	return copier.DataExtents(f.File, f.size)
}

func (f *fileSource) Close() error {
	err := f.File.Close()
	if f.onClose != nil {
		if cerr := f.onClose(); err == nil {
			err = cerr
		}
	}
	return err
}

// openFile reads the snapshot's flat file through a locally mounted
// datastore (Direct NFS).
func openFile(ctx context.Context, j *vmJob, d vsphere.Disk) (source, error) {
	path, err := j.localPath(ctx, d)
	if err != nil {
		return nil, err
	}
	f, size, err := copier.OpenSource(path)
	if err != nil {
		return nil, err
	}
	if size < d.Capacity {
		f.Close()
		return nil, fmt.Errorf("local file %s has %d bytes, the disk %d", path, size, d.Capacity)
	}
	return &fileSource{File: f, size: d.Capacity}, nil
}

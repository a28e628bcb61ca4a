package backupd

import (
	"context"

	"github.com/cairnbackup/cairn/backupd/source"
)

// FileTransport reads the snapshot's flat file through a locally mounted
// datastore (Direct NFS).
type FileTransport struct{}

// Name is "file".
func (FileTransport) Name() string { return TransportFile }

// Open opens the disk's local flat file.
func (FileTransport) Open(ctx context.Context, d DiskRef) (source.Source, error) {
	path, err := d.localPath(ctx)
	if err != nil {
		return nil, err
	}
	return source.OpenFile(path, source.FileOptions{Size: d.Disk.Capacity})
}

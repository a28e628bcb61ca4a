package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// pointDisk is a disk of a point as the guest filesystem readers need it:
// a local blockmap.DiskReader or a remote.DiskReader (--remote).
type pointDisk interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// remoteFileCache bounds the decrypted blocks files and restore-file keep
// of a remote disk: a filesystem walk rereads its metadata blocks often.
const remoteFileCache = 256 << 20

// openRemotePointDisk opens --disk of --vm/--point on --remote: blocks are
// fetched with ranged GETs and authenticated as they are read, so files and
// restore-file give the bytes of the remote point, or an error naming the
// damaged block, never wrong bytes.
func openRemotePointDisk(c *cli.Context, disk string) (*openedDisk, error) {
	repo, err := openRepo(c)
	if err != nil {
		return nil, err
	}
	o, err := func() (*openedDisk, error) {
		rc, err := loadRemoteConfig(repo.Dir(), c.String("remote"))
		if err != nil {
			return nil, err
		}
		opts, err := rc.optionsFor(c, repo.Dir())
		if err != nil {
			return nil, err
		}
		rem, err := remote.Open(c.Context, opts)
		if err != nil {
			return nil, remoteAdvice(rc, err)
		}
		pts, _, err := remotePointsOf(c, rem, rc, c.String("vm"))
		if err == nil {
			var p blockmap.Point
			if p, err = findRemotePoint(pts, rc.Name, c.String("vm"), c.String("point")); err == nil {
				var dr *remote.DiskReader
				if dr, err = rem.OpenDisk(c.Context, p.VM, p.ID, disk, remoteFileCache); err == nil {
					return &openedDisk{repo: repo, point: p, dr: dr, rem: rem}, nil
				}
			}
		}
		rem.Close()
		return nil, remoteAdvice(rc, err)
	}()
	if err != nil {
		repo.Close()
	}
	return o, err
}

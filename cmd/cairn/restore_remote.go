package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// remoteRestoreSource reads a remote point's disks and VM configuration
// for `restore vm --remote`: blocks are fetched with ranged GETs and
// authenticated as they are read, never written to the repository.
type remoteRestoreSource struct{ rem *remote.Remote }

func (s remoteRestoreSource) Attachment(ctx context.Context, p blockmap.Point, name string) ([]byte, error) {
	return s.rem.Attachment(ctx, p.VM, p.ID, name)
}

func (s remoteRestoreSource) OpenPointDisk(ctx context.Context, p blockmap.Point, disk string) (backupd.PointDisk, error) {
	dr, err := s.rem.OpenDisk(ctx, p.VM, p.ID, disk, 0)
	if err != nil {
		return nil, err
	}
	return dr, nil
}

// resolveRestorePoint finds --vm/--point in the repository or, with
// --remote, on that remote; then opts.Source reads the point from there.
// The returned function closes the remote.
func resolveRestorePoint(c *cli.Context, repo *blockmap.Repo, opts *backupd.RestoreOptions) (blockmap.Point, func(), error) {
	if c.String("remote") == "" {
		p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
		return p, func() {}, err
	}
	rc, err := loadRemoteConfig(repo.Dir(), c.String("remote"))
	if err != nil {
		return blockmap.Point{}, nil, err
	}
	o, err := rc.optionsFor(c, repo.Dir())
	if err != nil {
		return blockmap.Point{}, nil, err
	}
	rem, err := remote.Open(c.Context, o)
	if err != nil {
		return blockmap.Point{}, nil, remoteAdvice(rc, err)
	}
	pts, _, err := remotePointsOf(c, rem, rc, c.String("vm"))
	if err != nil {
		rem.Close()
		return blockmap.Point{}, nil, err
	}
	p, err := findRemotePoint(pts, rc.Name, c.String("vm"), c.String("point"))
	if err != nil {
		rem.Close()
		return blockmap.Point{}, nil, err
	}
	opts.Source = remoteRestoreSource{rem}
	return p, func() { rem.Close() }, nil
}

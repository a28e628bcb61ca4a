package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// remoteFindSource reads history and search from a remote's points (--remote):
// blocks are fetched and authenticated as the readers need them. A remote
// disk tells no block generations, so every point is read.
type remoteFindSource struct {
	c   *cli.Context
	rem *remote.Remote
	rc  *remoteConfig
}

func (s remoteFindSource) Points(ctx context.Context, vm string) ([]blockmap.Point, error) {
	pts, _, err := remotePointsOf(s.c, s.rem, s.rc, vm)
	if err == nil && len(pts) == 0 {
		err = remoteAdvice(s.rc, &blockmap.PointNotFoundError{VM: vm})
	}
	return pts, err
}

func (s remoteFindSource) OpenDisk(ctx context.Context, p blockmap.Point, disk string) (guestfind.Disk, error) {
	dr, err := s.rem.OpenDisk(ctx, p.VM, p.ID, disk, remoteFileCache)
	if err != nil {
		return nil, remoteAdvice(s.rc, err)
	}
	return dr, nil
}

// findSource is where history and search read: the repository, or the
// remote --remote names. close releases it.
func findSource(c *cli.Context) (src guestfind.Source, resolve func(ref string) (blockmap.Point, error), close func(), err error) {
	repo, err := openRepo(c)
	if err != nil {
		return nil, nil, nil, err
	}
	vm := c.String("vm")
	if c.String("remote") == "" {
		return guestfind.Local(repo), func(ref string) (blockmap.Point, error) { return repo.ResolvePoint(c.Context, vm, ref) },
			func() { repo.Close() }, nil
	}
	rc, err := loadRemoteConfig(repo.Dir(), c.String("remote"))
	if err == nil {
		var opts remote.Options
		if opts, err = rc.optionsFor(c, repo.Dir()); err == nil {
			var rem *remote.Remote
			if rem, err = remote.Open(c.Context, opts); err == nil {
				s := remoteFindSource{c: c, rem: rem, rc: rc}
				resolve := func(ref string) (blockmap.Point, error) {
					pts, err := s.Points(c.Context, vm)
					if err != nil {
						return blockmap.Point{}, err
					}
					return findRemotePoint(pts, rc.Name, vm, ref)
				}
				return s, resolve, func() { rem.Close(); repo.Close() }, nil
			}
			err = remoteAdvice(rc, err)
		}
	}
	repo.Close()
	return nil, nil, nil, err
}

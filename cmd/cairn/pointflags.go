package main

import (
	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap"
)

// The flags that name one recovery point (and one of its disks), shared by
// the commands that act on a single point.
func vmFlag() cli.Flag { return &cli.StringFlag{Name: "vm", Required: true, Usage: "VM name"} }

func pointFlag() cli.Flag {
	return &cli.StringFlag{Name: "point", Value: "latest", Usage: "point id, generation number or latest"}
}

func diskFlag() cli.Flag {
	return &cli.StringFlag{Name: "disk", Required: true, Usage: "disk name (see cairn points)"}
}

// openPoint opens the repository and resolves --vm and --point. The caller
// closes the repository; on error nothing is left open.
func openPoint(c *cli.Context) (*blockmap.Repo, blockmap.Point, error) {
	repo, err := openRepo(c)
	if err != nil {
		return nil, blockmap.Point{}, err
	}
	p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
	if err != nil {
		repo.Close()
		return nil, blockmap.Point{}, err
	}
	return repo, p, nil
}

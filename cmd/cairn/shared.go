package main

import (
	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap"
)

// Flags and openers shared by several commands.

// vmFlag, pointFlag and diskFlag name one recovery point (and one of its
// disks) for the commands that act on a single point.
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

// openLocalDisk is openPoint and the --disk of that point; an unknown disk
// is named with the disks the point has. The caller closes both.
func openLocalDisk(c *cli.Context) (*blockmap.Repo, blockmap.Point, *blockmap.DiskReader, error) {
	repo, p, err := openPoint(c)
	if err != nil {
		return nil, p, nil, err
	}
	dr, err := repo.OpenDisk(c.Context, p, c.String("disk"))
	if err != nil {
		repo.Close()
		// blockmap's error names the point, the disk asked for and the
		// point's disks: wrapping it again said it all twice
		return nil, p, nil, err
	}
	return repo, p, dr, nil
}

// jsonFlag is --json: print JSON instead of text.
func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON"} }

// onlyVMFlag is --vm for commands that act on every VM by default.
func onlyVMFlag() cli.Flag { return &cli.StringFlag{Name: "vm", Usage: "only this VM"} }

// openCatalog opens the repository and reads its catalog (every VM and its
// points). The caller closes the repository; on error nothing is left open.
func openCatalog(c *cli.Context) (*blockmap.Repo, []blockmap.VMSummary, error) {
	repo, err := openRepo(c)
	if err != nil {
		return nil, nil, err
	}
	cat, err := repo.Catalog(c.Context)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	return repo, cat, nil
}

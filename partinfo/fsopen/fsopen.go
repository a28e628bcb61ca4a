package fsopen

import (
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/btrfs"
	"github.com/cairnbackup/cairn/partinfo/exfat"
	"github.com/cairnbackup/cairn/partinfo/fat"
	"github.com/cairnbackup/cairn/partinfo/ntfs"
	"github.com/cairnbackup/cairn/partinfo/xfs"
)

// Opener opens one kind of filesystem at r[off:off+size].
type Opener func(r io.ReaderAt, off, size int64) (partinfo.Filesystem, error)

// openers maps a Detection.Type to its reader.
func openers() map[string]Opener {
	openFAT := func(r io.ReaderAt, off, size int64) (partinfo.Filesystem, error) {
		return fat.Open(r, off, size)
	}
	openNTFS := func(r io.ReaderAt, off, size int64) (partinfo.Filesystem, error) {
		return ntfs.Open(r, off, size)
	}
	m := map[string]Opener{
		"xfs":   xfs.Open,
		"ntfs":  openNTFS,
		"fat12": openFAT,
		"fat16": openFAT,
		"fat32": openFAT,
		"exfat": openExFAT,
		"btrfs": openBtrfs,
	}
	addExt(m)
	return m
}

func openBtrfs(r io.ReaderAt, off, size int64) (partinfo.Filesystem, error) {
	return btrfs.Open(r, off, size)
}

func openExFAT(r io.ReaderAt, off, size int64) (partinfo.Filesystem, error) {
	return exfat.Open(r, off, size)
}

// Open opens the volume at r[off:off+size] that Detect described as d,
// through partinfo.SafeOpen: a reader's panic while opening is an error
// wrapping partinfo.ErrCorrupt, and the result is wrapped in
// partinfo.Safe. Volumes cairn cannot browse return a
// *partinfo.UnreadableError.
func Open(r io.ReaderAt, off, size int64, d partinfo.Detection) (partinfo.Filesystem, error) {
	open, ok := openers()[d.Type]
	if !ok {
		if u := partinfo.Unreadable(d); u != nil {
			return nil, u
		}
		return nil, &partinfo.UnreadableError{
			What: "an " + d.Type + " filesystem",
			Why:  "this build of cairn has no " + d.Type + " reader yet: export the disk image and mount it read-only on Linux.",
		}
	}
	fsys, err := partinfo.SafeOpen(d.Type, func() (partinfo.Filesystem, error) { return open(r, off, size) })
	if err != nil {
		return nil, fmt.Errorf("open %s volume: %w", d.Type, err)
	}
	return fsys, nil
}

// OpenPartition detects and opens one partition of a disk.
func OpenPartition(r io.ReaderAt, p partinfo.Partition) (partinfo.Filesystem, partinfo.Detection, error) {
	d := partinfo.DetectPartition(r, p)
	if p.Extended {
		return nil, d, &partinfo.UnreadableError{What: "an MBR extended partition",
			Why: "it is only a container: its logical partitions are listed separately (p5, p6, ...)."}
	}
	fsys, err := Open(r, p.Start, p.Size, d)
	return fsys, d, err
}

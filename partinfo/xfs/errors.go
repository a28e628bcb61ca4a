package xfs

import (
	"errors"
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

// ErrUnsupported marks XFS features this reader refuses to interpret.
var ErrUnsupported = errors.New("xfs: unsupported feature")

// corruptf returns an error wrapping partinfo.ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("xfs: %s: %w", fmt.Sprintf(format, args...), partinfo.ErrCorrupt)
}

// ErrNotXFS is returned by Open when the partition holds no XFS superblock.
var ErrNotXFS = errors.New("xfs: not an XFS filesystem")

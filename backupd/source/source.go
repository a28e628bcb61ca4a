package source

import (
	"context"
	"io"

	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/blockmap"
)

// Source is one disk to read.
type Source interface {
	io.ReaderAt
	// Size is the disk's size in bytes.
	Size() int64
	// Allocated lists the areas a full read has to cover; the rest reads
	// as zeros.
	Allocated(ctx context.Context) ([]blockmap.Extent, error)
	// Meta is what a point records about the source (transport, name).
	Meta() map[string]any
	// CopyOptions are the copy settings that suit this kind of source
	// (zero fields: the copier's defaults).
	CopyOptions() copier.Options
	// Close releases the source (and runs what was given to run on
	// close, such as detaching a hot-added disk).
	Close() error
}

// ChangeTracker is a Source that knows which areas changed since a base
// it names (a qemu dirty bitmap).
type ChangeTracker interface {
	Source
	// Changed lists the areas changed since the base.
	Changed(ctx context.Context) ([]blockmap.Extent, error)
	// Base names what the areas are relative to ("dirty bitmap NAME"); ""
	// when the source tracks nothing.
	Base() string
}

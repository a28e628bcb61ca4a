package fusefs

import (
	"context"
	"io"
	"log/slog"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/cairnbackup/cairn/blockmap"
)

// DiskSource is what an FSProvider gets to build the directory fs/<disk>
// of one disk of a recovery point.
type DiskSource struct {
	// Point is the recovery point; Disk the disk inside it.
	Point blockmap.Point
	Disk  blockmap.DiskInfo
	// Reader reads the disk's bytes as they were at the point. It is safe
	// for concurrent use and stays valid for the life of the mount (it
	// borrows a reader from the mount's cache for every call). Reads fail
	// with an error wrapping blockmap.ErrCorrupt (a *blockmap.BlockError)
	// when stored bytes fail their checksum, and with ErrPointGone once the
	// point has been deleted.
	Reader io.ReaderAt
	// Size is the disk's logical size in bytes.
	Size int64
}

// FSProvider builds the node of the directory fs/<disk> for one disk of a
// point: typically a read-only tree of the disk's partitions and guest
// filesystems (see package partinfo). It is called at most once per point
// and disk per mount, the first time fs/<disk> is looked up or fs/ is
// listed (a listing looks up every entry), with a context that ends when
// the mount ends. Calls for different disks may run concurrently.
//
// The returned node must be a directory node of the go-fuse fs package
// (it is added with mode S_IFDIR). Nodes below it should set long entry
// and attribute timeouts (the content of a point never changes; the mount
// sets no default) and should never panic (fusefs/guest reads guest
// filesystems only through partinfo's reader boundary, partinfo.Safe and
// SafeOpen, which turn a reader's panic into an error); the mount is
// read-only, so write operations fail with EROFS in the kernel whatever
// the nodes implement. If the provider returns an error, fs/<disk> shows
// a single file ERROR.txt that explains it. A panic is not recovered by
// fusefs: go-fuse's handler, the mount's one recover, answers the request
// EIO and logs the stack; fs/<disk> then answers EIO for the life of the
// mount and everything else keeps being served.
type FSProvider func(ctx context.Context, src DiskSource) (gofs.InodeEmbedder, error)

// Options configure a mount.
type Options struct {
	// Logger receives errors (corrupt blocks, failed catalog reads) and
	// notices. nil means slog.Default().
	Logger *slog.Logger
	// FSProvider, when set, adds fs/<disk> directories to every point.
	// When nil, points have no fs/ directory.
	FSProvider FSProvider
	// VolumeProvider, when set with FSProvider, adds directories of
	// volumes assembled across a point's disks to fs/ (fs/lvm).
	VolumeProvider VolumeProvider
	// AllowOther lets users other than the one who mounted read the tree
	// (FUSE allow_other; non-root users need user_allow_other in
	// /etc/fuse.conf).
	AllowOther bool
	// MaxReaders bounds the number of idle disk readers kept open
	// (0 means 64). Readers held by open files do not count.
	MaxReaders int
	// ReaderMemory bounds the memory of idle disk readers' block maps in
	// bytes (0 means 256 MiB); the most recently used reader is kept even
	// when it alone is larger.
	ReaderMemory int64
	// CatalogPoll is how often the root and VM directories check the
	// repository for new or deleted points when no change notification
	// arrived (0 means 1s).
	CatalogPoll time.Duration
	// ReadAheadKB is written to the mount's /sys/class/bdi/<dev>/read_ahead_kb
	// after mounting (0 means 16384; negative leaves the kernel default).
	// Sequential readers then reach FUSE as 1 MiB requests, many in
	// flight at once: a cold point spread over many delta images is read
	// by parallel requests instead of one at a time.
	ReadAheadKB int
	// Debug logs every FUSE request (go-fuse's debug output).
	Debug bool
	// BootChecksDir holds boot check results by <vm>/<point>/ (result.json,
	// screenshot.png), shown in every point as boot/. Default:
	// <repo>/bootchecks, where cairn verify-boot keeps them.
	BootChecksDir string
}

// defaultReadAheadKB is the mount's readahead: 16 MiB measured best for
// dd of a cold point 20 incrementals deep (1 MiB: 40 % of a plain file,
// 8 MiB: ~95 %, 16 MiB: ~125 %, 32-64 MiB: no better; medians of
// alternating runs on a shared 2-core machine).
const defaultReadAheadKB = 16 << 10

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxReaders <= 0 {
		o.MaxReaders = 64
	}
	if o.ReaderMemory <= 0 {
		o.ReaderMemory = 256 << 20
	}
	if o.CatalogPoll <= 0 {
		o.CatalogPoll = time.Second
	}
	if o.ReadAheadKB == 0 {
		o.ReadAheadKB = defaultReadAheadKB
	}
	return o
}

package partinfo

import (
	"errors"
	"io/fs"
	"time"
)

// ErrNotDir, ErrNotSymlink and ErrNotRegular are returned (wrapped) when an
// operation is applied to an inode of the wrong type.
var (
	ErrNotDir     = errors.New("not a directory")
	ErrNotSymlink = errors.New("not a symbolic link")
	ErrNotRegular = errors.New("not a regular file")
	// ErrCorrupt marks on-disk structures that fail validation.
	ErrCorrupt = errors.New("filesystem structure is corrupt")
	// ErrNoData is returned by SeekData when no data follows the offset
	// (the lseek ENXIO case).
	ErrNoData = errors.New("no data after offset")
)

// Attr is the metadata of one inode, as the guest filesystem records it.
type Attr struct {
	Ino   uint64
	Mode  fs.FileMode // Go mode: type bits (fs.ModeDir, fs.ModeSymlink, ...) plus permission, setuid/setgid/sticky bits
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Size  int64
	// Blocks is the allocated size in 512-byte units (0 when unknown).
	Blocks int64
	Atime  time.Time
	Mtime  time.Time
	Ctime  time.Time
	// Rdev is the device number of character and block device inodes.
	Rdev uint32
}

// DirEntry is one name in a directory. Type holds only the type bits.
type DirEntry struct {
	Name string
	Ino  uint64
	Type fs.FileMode
}

// Info describes a filesystem as a whole.
type Info struct {
	Type      string // "ext4", "xfs", "ntfs", "fat32", ...
	Label     string
	UUID      string
	BlockSize int
	Size      int64 // bytes the filesystem spans
	Used      int64 // bytes in use, -1 when unknown
	Free      int64 // bytes free, -1 when unknown
	// Recovered says what the reader replayed in memory because the image
	// was taken from a running system ("journal replayed: 12 blocks",
	// "log replayed: 3 transactions"), or why a journal or log that needed
	// recovery was ignored; "" for a clean filesystem.
	Recovered string
}

// Filesystem is a read-only guest filesystem opened over an io.ReaderAt.
// Every method must be safe for concurrent use by many goroutines, must
// never panic on corrupt input (return an error wrapping ErrCorrupt), and
// must read only through the ReaderAt it was opened on.
type Filesystem interface {
	// Info describes the filesystem.
	Info() Info
	// Root is the inode number of the root directory.
	Root() uint64
	// Stat returns the attributes of an inode.
	Stat(ino uint64) (Attr, error)
	// ReadDir lists a directory without "." and "..".
	ReadDir(ino uint64) ([]DirEntry, error)
	// Lookup finds one name in a directory; fs.ErrNotExist when absent.
	Lookup(dir uint64, name string) (uint64, error)
	// Readlink returns a symbolic link's target exactly as stored.
	Readlink(ino uint64) (string, error)
	// ReadAt reads a regular file's bytes; holes read as zeros; io.EOF at the end.
	ReadAt(ino uint64, p []byte, off int64) (int, error)
	// SeekData returns the first offset >= off that holds data (ErrNoData when none).
	SeekData(ino uint64, off int64) (int64, error)
	// SeekHole returns the first offset >= off inside a hole; the file size when none.
	SeekHole(ino uint64, off int64) (int64, error)
}

package ext4

import (
	"encoding/binary"
	"fmt"
	"github.com/cairnbackup/cairn/internal/lru"
	"io"
	"io/fs"

	"github.com/cairnbackup/cairn/partinfo"
)

// Cache budgets. Costs: one per inode/group, one per extent run, one per
// directory entry.
const (
	inodeCacheSize = 16384
	groupCacheSize = 65536
	mapCacheRuns   = 1 << 20
	dirCacheNames  = 256 << 10
	itableBytes    = 8 << 20
)

const rootIno = 2

// FS is a read-only ext2/ext3/ext4 filesystem. It implements
// partinfo.Filesystem and is safe for concurrent use.
type FS struct {
	r    io.ReaderAt
	off  int64
	size int64
	sb   *superblock
	info partinfo.Info

	inodes *lru.Cache[uint64, *inode]
	groups *lru.Cache[uint64, uint64]
	itable *lru.Cache[uint64, []byte] // raw inode table blocks, read-only once cached
	maps   *lru.Cache[uint64, *fileMap]
	dirs   *lru.Cache[uint64, *dirIndex]

	// journal holds the committed journal blocks that a recovery would
	// write (nil when the filesystem is clean); journalErr says why a
	// damaged journal was ignored.
	journal    *overlay
	journalErr error
}

var _ partinfo.Filesystem = (*FS)(nil)

// Probe reports whether an ext2/3/4 superblock magic sits in the partition
// that starts at off.
func Probe(r io.ReaderAt, off int64) bool {
	var b [2]byte
	if n, _ := r.ReadAt(b[:], off+superblockOffset+0x38); n != 2 {
		return false
	}
	return binary.LittleEndian.Uint16(b[:]) == superMagic
}

// Open opens the ext2/3/4 filesystem in the partition [off, off+size) of r.
// size <= 0 means unknown (no bound check against the partition end).
func Open(r io.ReaderAt, off, size int64) (fsys partinfo.Filesystem, err error) {
	f := &FS{r: r, off: off, size: size}
	b := make([]byte, superblockSize)
	if err := f.readFull(b, superblockOffset); err != nil {
		return nil, fmt.Errorf("ext4: read superblock: %w", err)
	}
	sb, err := parseSuperblock(b)
	if err != nil {
		return nil, fmt.Errorf("ext4: %w", err)
	}
	span := int64(sb.blocksCount) * sb.blockSize
	if span/sb.blockSize != int64(sb.blocksCount) || (size > 0 && span > size) {
		return nil, fmt.Errorf("ext4: filesystem spans %d blocks of %d bytes, partition has %d bytes: %w",
			sb.blocksCount, sb.blockSize, size, partinfo.ErrCorrupt)
	}
	f.sb = sb
	free := min(sb.freeBlocks, sb.blocksCount)
	f.info = partinfo.Info{
		Type:      sb.fsType(),
		Label:     sb.label,
		UUID:      sb.uuidString(),
		BlockSize: int(sb.blockSize),
		Size:      span,
		Used:      int64(sb.blocksCount-free) * sb.blockSize,
		Free:      int64(free) * sb.blockSize,
	}
	f.resetCaches()
	if sb.incompat&incompatRecover != 0 && sb.compat&compatHasJournal != 0 && sb.journalIno != 0 {
		// Replay in memory: reads see the committed transactions. A
		// damaged journal is ignored (the main filesystem stays readable).
		f.journal, f.journalErr = f.loadJournalOverlay(uint64(sb.journalIno))
		if f.journalErr != nil {
			f.journal = nil
		}
		f.resetCaches() // drop what was read before the overlay existed
		if blocks, err := f.JournalReplay(); err != nil {
			f.info.Recovered = "journal needed recovery but was ignored: " + err.Error()
		} else if blocks > 0 {
			f.info.Recovered = fmt.Sprintf("journal replayed: %d blocks", blocks)
		}
	}
	if n, ok := f.groupFreeBlocks(); ok {
		f.info.Used, f.info.Free = int64(sb.blocksCount-n)*sb.blockSize, int64(n)*sb.blockSize
	}
	root, err := f.readInode(rootIno)
	if err != nil {
		return nil, fmt.Errorf("ext4: root directory: %w", err)
	}
	if root.typ() != modeDir {
		return nil, fmt.Errorf("ext4: root inode is not a directory: %w", partinfo.ErrCorrupt)
	}
	return f, nil
}

func (f *FS) resetCaches() {
	f.inodes = lru.New[uint64, *inode](inodeCacheSize)
	f.groups = lru.New[uint64, uint64](groupCacheSize)
	f.itable = lru.New[uint64, []byte](itableBytes)
	f.maps = lru.New[uint64, *fileMap](mapCacheRuns)
	f.dirs = lru.New[uint64, *dirIndex](dirCacheNames)
}

// JournalReplay reports how many blocks the in-memory journal replay
// supplies (0 for a clean filesystem) and, if the journal needed recovery
// but could not be parsed, why it was ignored.
func (f *FS) JournalReplay() (blocks int, err error) {
	if f.journal != nil {
		blocks = len(f.journal.blocks)
	}
	return blocks, f.journalErr
}

// Info describes the filesystem.
func (f *FS) Info() partinfo.Info { return f.info }

// Root returns the root directory's inode number (2).
func (f *FS) Root() uint64 { return rootIno }

// Stat returns the attributes of inode ino.
func (f *FS) Stat(ino uint64) (a partinfo.Attr, err error) {
	n, err := f.readInode(ino)
	if err != nil {
		return partinfo.Attr{}, err
	}
	return n.attr(), nil
}

// ReadDir lists directory ino in on-disk order, without "." and "..".
func (f *FS) ReadDir(ino uint64) (entries []partinfo.DirEntry, err error) {
	n, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	d, err := f.loadDir(n)
	if err != nil {
		return nil, err
	}
	return append([]partinfo.DirEntry(nil), d.entries...), nil
}

// Lookup finds name in directory dir ("." and ".." included).
func (f *FS) Lookup(dir uint64, name string) (ino uint64, err error) {
	n, err := f.readInode(dir)
	if err != nil {
		return 0, err
	}
	if _, cached := f.dirs.Get(dir); !cached && name != "." && name != ".." {
		// Large hashed directory not parsed yet: read one path of the
		// htree instead of the whole directory. Any doubt (unhandled hash,
		// collision chain, damaged index) falls back to the full parse.
		if ino, found, err := f.htreeLookup(n, name); err == nil {
			if !found {
				return 0, fmt.Errorf("%q in directory %d: %w", name, dir, fs.ErrNotExist)
			}
			return ino, nil
		}
	}
	d, err := f.loadDir(n)
	if err != nil {
		return 0, err
	}
	switch name {
	case ".":
		return dir, nil
	case "..":
		if d.parent == 0 {
			return 0, fmt.Errorf("directory %d has no parent entry: %w", dir, partinfo.ErrCorrupt)
		}
		return d.parent, nil
	}
	if ino, ok := d.byName[name]; ok {
		return ino, nil
	}
	return 0, fmt.Errorf("%q in directory %d: %w", name, dir, fs.ErrNotExist)
}

// maxSymlinkSize bounds symlink targets (the kernel allows up to one block).
const maxSymlinkSize = 65536

// Readlink returns the target of symbolic link ino exactly as stored.
func (f *FS) Readlink(ino uint64) (target string, err error) {
	n, err := f.readInode(ino)
	if err != nil {
		return "", err
	}
	if n.typ() != modeLink {
		return "", fmt.Errorf("inode %d: %w", ino, partinfo.ErrNotSymlink)
	}
	if n.size > maxSymlinkSize {
		return "", fmt.Errorf("symlink %d size %d absurd: %w", ino, n.size, partinfo.ErrCorrupt)
	}
	if n.isFastSymlink(f.sb.clusterSize) {
		return string(n.iblock[:n.size]), nil
	}
	buf := make([]byte, n.size)
	if _, err := f.readContent(n, buf, 0); err != nil && err != io.EOF {
		return "", fmt.Errorf("symlink %d: %w", ino, err)
	}
	return string(buf), nil
}

// isFastSymlink reports whether the target lives in i_block itself. Like
// the kernel, this is decided by the inode owning no blocks besides an
// extended attribute block.
func (n *inode) isFastSymlink(clusterSize int64) bool {
	if n.flags&flagInlineData != 0 || n.size >= int64(len(n.iblock)) {
		return false
	}
	dataBlocks := n.blocks
	if n.fileACL != 0 {
		dataBlocks -= clusterSize / 512
	}
	return dataBlocks <= 0
}

// regular loads inode ino and checks that it is a regular file.
func (f *FS) regular(ino uint64) (*inode, error) {
	n, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	if n.typ() != modeReg {
		return nil, fmt.Errorf("inode %d: %w", ino, partinfo.ErrNotRegular)
	}
	// No ext2/3/4 block map reaches past 2^32 blocks (16 TiB at 4 KiB):
	// a larger size is corruption, not endless zeros to read.
	if lim := int64(1<<32) * f.sb.blockSize; n.size > lim || n.size < 0 {
		return nil, fmt.Errorf("inode %d: size %d is beyond the %d bytes ext4 can map: %w", ino, n.size, lim, partinfo.ErrCorrupt)
	}
	return n, nil
}

// ReadAt reads regular file ino at off; holes and unwritten extents read
// as zeros; io.EOF when the read reaches the end of the file.
func (f *FS) ReadAt(ino uint64, p []byte, off int64) (n int, err error) {
	in, err := f.regular(ino)
	if err != nil {
		return 0, err
	}
	return f.readContent(in, p, off)
}

// SeekData returns the first offset >= off holding data; an error wrapping
// partinfo.ErrNoData when none follows (or off is at or beyond the end).
func (f *FS) SeekData(ino uint64, off int64) (pos int64, err error) {
	in, err := f.regular(ino)
	if err != nil {
		return 0, err
	}
	return f.seek(in, off, true)
}

// SeekHole returns the first offset >= off inside a hole (unwritten
// extents count as holes), or the file size. Like lseek, off at or beyond
// the end gives an error wrapping partinfo.ErrNoData.
func (f *FS) SeekHole(ino uint64, off int64) (pos int64, err error) {
	in, err := f.regular(ino)
	if err != nil {
		return 0, err
	}
	return f.seek(in, off, false)
}

package xfs

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/cairnbackup/cairn/internal/lru"
	"io"

	"github.com/cairnbackup/cairn/partinfo"
)

// Cache bounds: parsed inodes, extent records and directory entries.
const (
	inodeCacheEntries  = 4096
	extentCacheRecords = 1 << 20
	dirCacheEntries    = 1 << 18
	xattrCacheBytes    = 8 << 20
	// hashLookupFrom is the directory size from which Lookup of an
	// uncached directory walks the hash index instead of parsing it all.
	hashLookupFrom = 1 << 20
)

// xfs is a read-only XFS filesystem. All state after Open is immutable
// except the caches, which lock internally, so methods are goroutine-safe.
type xfs struct {
	r    io.ReaderAt
	base int64 // partition start in r
	sb   *superblock
	geo  geometry

	inodes  *lru.Cache[uint64, *inode]
	extents *lru.Cache[uint64, []extent]
	dirs    *lru.Cache[uint64, *directory]
	xattrs  *lru.Cache[uint64, []partinfo.Xattr] // by inode, cost in bytes

	hashLookupFrom int64 // see the constant; tests lower it

	// log holds what replaying a dirty log changed (nil for a clean log);
	// logErr says why a log that needed recovery could not be replayed.
	log    *logOverlay
	logErr error
}

var _ partinfo.Filesystem = (*xfs)(nil)

// Probe reports whether the partition at off in r starts with an XFS superblock.
func Probe(r io.ReaderAt, off int64) bool {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], off); err != nil {
		return false
	}
	return string(magic[:]) == "XFSB"
}

// Open reads the XFS filesystem in the partition of size bytes starting at
// off in r. Only the superblock is read here; everything else on demand.
func Open(r io.ReaderAt, off, size int64) (fsys partinfo.Filesystem, err error) {
	return open(r, off, size, true)
}

// open is Open with the log replay optional (tests compare both).
func open(r io.ReaderAt, off, size int64, replay bool) (fsys partinfo.Filesystem, err error) {
	if off < 0 || size <= 0 {
		return nil, fmt.Errorf("xfs: bad partition bounds offset %d size %d", off, size)
	}
	sb, err := readSuperblock(r, off)
	if err != nil {
		return nil, err
	}
	x := &xfs{
		r:    r,
		base: off,
		sb:   sb,
		geo: geometry{
			blockSize:  int64(sb.blockSize),
			blockLog:   uint(sb.blockLog),
			agBlocks:   uint64(sb.agBlocks),
			agCount:    uint64(sb.agCount),
			agBlkLog:   uint(sb.agBlkLog),
			inoPBLog:   uint(sb.inoPBLog),
			inodeSize:  int64(sb.inodeSize),
			dblocks:    sb.dblocks,
			partSize:   size,
			dirBlkSize: int64(sb.blockSize) << sb.dirBlkLog,
			dirBlkFsb:  uint64(1) << sb.dirBlkLog,
		},
		inodes:  lru.New[uint64, *inode](inodeCacheEntries),
		extents: lru.New[uint64, []extent](extentCacheRecords),
		dirs:    lru.New[uint64, *directory](dirCacheEntries),
		xattrs:  lru.New[uint64, []partinfo.Xattr](xattrCacheBytes),

		hashLookupFrom: hashLookupFrom,
	}
	if fsBytes := int64(sb.dblocks) * int64(sb.blockSize); fsBytes > size {
		return nil, fmt.Errorf("xfs: filesystem of %d bytes exceeds its %d-byte partition: %w", fsBytes, size, partinfo.ErrCorrupt)
	}
	// Replay a dirty log in memory; a damaged log is ignored (the
	// filesystem stays readable as it is on disk) and reported.
	if !replay {
	} else if o, err := x.replayLog(); err == nil {
		x.log = o
	} else if !errors.Is(err, errLogClean) {
		x.logErr = err
	}
	root, err := x.readInode(sb.rootIno)
	if err != nil {
		return nil, fmt.Errorf("xfs: root inode: %w", err)
	}
	if !root.isDir() {
		return nil, corruptf("root inode %d is not a directory", sb.rootIno)
	}
	return x, nil
}

// readRaw reads len(p) bytes at partition offset off, refusing reads
// outside the partition, as the filesystem stands after log recovery.
func (x *xfs) readRaw(p []byte, off int64) error {
	if err := x.readDisk(p, off); err != nil {
		return err
	}
	if x.log != nil {
		x.log.apply(p, off)
	}
	return nil
}

// readDisk reads len(p) bytes at partition offset off as they are on disk.
func (x *xfs) readDisk(p []byte, off int64) error {
	if off < 0 || int64(len(p)) > x.geo.partSize || off > x.geo.partSize-int64(len(p)) {
		return corruptf("read of %d bytes at %d outside the partition", len(p), off)
	}
	n, err := x.r.ReadAt(p, x.base+off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}

// Info describes the filesystem from its superblock.
func (x *xfs) Info() partinfo.Info {
	size := int64(x.sb.dblocks) * x.geo.blockSize
	free := int64(-1)
	used := int64(-1)
	fdblocks, ok := x.agfFreeBlocks()
	if !ok {
		fdblocks = x.sb.fdblocks
	}
	if fdblocks <= x.sb.dblocks {
		free = int64(fdblocks) * x.geo.blockSize
		used = size - free
	}
	recovered := ""
	if n, err := x.LogReplay(); err != nil {
		recovered = "log needed recovery but was ignored: " + err.Error()
	} else if n > 0 {
		recovered = fmt.Sprintf("log replayed: %d transactions", n)
	}
	return partinfo.Info{
		Recovered: recovered,
		Type:      "xfs",
		Label:     x.sb.label,
		UUID:      formatUUID(x.sb.uuid),
		BlockSize: int(x.sb.blockSize),
		Size:      size,
		Used:      used,
		Free:      free,
	}
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Root returns the root directory's inode number.
func (x *xfs) Root() uint64 { return x.sb.rootIno }

// Stat returns the attributes of inode ino.
func (x *xfs) Stat(ino uint64) (a partinfo.Attr, err error) {
	in, err := x.readInode(ino)
	if err != nil {
		return partinfo.Attr{}, err
	}
	return in.attr(x.geo.blockSize), nil
}

// LogReplay reports how many committed transactions the in-memory log
// replay applied (0 for a clean log) and, if the log needed recovery but
// could not be replayed, why it was ignored.
func (x *xfs) LogReplay() (transactions int, err error) {
	if x.log != nil {
		transactions = x.log.trans
	}
	return transactions, x.logErr
}

// agfFreeBlocks sums the free blocks of every allocation group's AGF
// header (free space btree blocks, free list and btree blocks), as the
// kernel does when it mounts a filesystem with lazy superblock counters
// (xfs_initialize_perag_data): those counters reach the superblock only
// at unmount or freeze, so in a crash-consistent image they are the ones
// of the last clean mount. Read through the replayed log. ok is false
// when an AGF cannot be read or looks wrong (the superblock counter is
// used then).
func (x *xfs) agfFreeBlocks() (free uint64, ok bool) {
	const agfMagic = 0x58414746 // "XAGF"
	const lazySBCount = 0x2     // sb_features2: counters kept in the AGFs, the superblock's lag
	if !x.sb.v5() && (x.sb.versionNum&versionMoreBits == 0 || x.sb.features2&lazySBCount == 0) {
		return 0, false // the superblock's counter is exact
	}
	if x.sb.agCount > 1<<16 {
		return 0, false // not worth thousands of reads for one number
	}
	be := binary.BigEndian
	var b [64]byte
	for ag := uint64(0); ag < uint64(x.sb.agCount); ag++ {
		off := int64(ag)*int64(x.sb.agBlocks)*x.geo.blockSize + int64(x.sb.sectSize)
		if err := x.readRaw(b[:], off); err != nil || be.Uint32(b[0:]) != agfMagic || be.Uint32(b[8:]) != uint32(ag) {
			return 0, false
		}
		length := uint64(be.Uint32(b[12:]))
		agFree := uint64(be.Uint32(b[52:])) + uint64(be.Uint32(b[48:])) + uint64(be.Uint32(b[60:])) // freeblks + flcount + btreeblks
		if agFree > length {
			return 0, false
		}
		free += agFree
	}
	return free, true
}

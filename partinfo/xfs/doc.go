// Package xfs is a read-only reader of XFS filesystems over an io.ReaderAt,
// implementing partinfo.Filesystem for cairn's FUSE browsing of recovery
// points. It reads through the ReaderAt only, is safe for concurrent use
// and answers random reads (ReadAt) directly from the extent map.
//
// Supported:
//   - v5 (CRC) superblocks as current mkfs.xfs makes them, and v4
//     superblocks (no CRCs; with or without the ftype feature);
//   - AG geometry: block and inode numbers split into AG number and
//     AG-relative part (agblklog, inopblog);
//   - v3 (and v1/v2 on v4) inodes; data forks in local, extents and btree
//     (multi-level bmbt) format; the nrext64 large extent counters;
//   - directories in short-form, block, leaf and node form (entries come
//     from the data blocks; leaf, node and free-index blocks are not
//     needed); entries without ftype get their type from the inode;
//   - symlinks inline and remote (v5 remote blocks with their header);
//   - modes incl. setuid/setgid/sticky, uid/gid, nlink, sizes, device
//     numbers (Linux encoding), timestamps incl. bigtime;
//   - holes and unwritten (preallocated) extents read as zeros and are
//     reported as holes by SeekData/SeekHole;
//   - CRC32C verification on v5 of the superblock, inodes, directory data
//     blocks, bmbt blocks and remote symlink blocks, plus owner and
//     inode-number checks. Failures wrap partinfo.ErrCorrupt;
//   - extended attributes (Xattrs, partinfo.XattrReader): the attribute
//     fork in shortform, leaf and node (da-btree) form, remote values
//     (v5 blocks with their header), names by namespace (user., trusted.
//     for ATTR_ROOT, security. for ATTR_SECURE; parent pointers hidden),
//     and trusted.SGI_ACL_FILE/DEFAULT also listed as
//     system.posix_acl_access/default in the Linux xattr ACL format, as
//     the kernel does;
//   - log recovery (logreplay.go): an internal log that a crash left
//     dirty is replayed in memory at Open, read-only — head found by the
//     cycle numbers, records from the tail unpacked, transactions
//     reassembled; buffer items (honouring cancel records) and inode items
//     (the logged core converted from the log's little-endian form, data
//     and attribute forks, bmbt roots converted to the on-disk form) are
//     laid over the image as 512-byte sectors, and the CRCs of every
//     changed block and inode recomputed. LogReplay and Info().Recovered
//     report it; a log that cannot be parsed is ignored and reported.
//     Intent items (extent frees, rmap/reflink/bmap and attribute
//     intents) are not replayed.
//
// Refused or ignored:
//   - incompatible feature bits it does not know (ErrUnsupported), e.g.
//     metadir and zoned devices;
//   - files on a realtime device (ErrUnsupported on read); an external
//     log device (not part of the image: not replayed);
//   - quotas,
//     reflink sharing (shared blocks are simply read), the free-space
//     and inode btrees (not needed to read files).
//
// Used and free space come from the allocation groups' AGF headers
// (read through the replayed log), as the kernel counts them at mount:
// the superblock counter (sb_fdblocks), which lazy-count filesystems
// update only at unmount or freeze, lags on an image of a mounted
// filesystem. It is used when an AGF cannot be read.
//
// Caches are bounded: decoded inodes, extent maps (by record count) and
// parsed directories (by entry count, which makes Lookup a map access
// after the first use of a directory). Lookup in a large (over 1 MiB)
// leaf- or node-form directory that is not cached walks the directory's
// hash index instead: a few block reads, nothing parsed whole. Corrupt input is bounded too:
// btree depth and block budget, record counts, extent placement (FuzzXFS).
// The reader does not recover from panics itself: callers reach it through
// partinfo/fsopen, whose partinfo.SafeOpen and partinfo.Safe turn an
// unforeseen fault into an error wrapping partinfo.ErrCorrupt.
package xfs

// Package ext4 is a read-only, random-access reader of ext2, ext3 and ext4
// filesystems over an io.ReaderAt. It implements partinfo.Filesystem and
// is safe for concurrent use.
//
// Open parses the superblock of the partition at a given offset; Probe only
// checks the magic. File reads map offsets to physical blocks through the
// inode's extent tree or block map and issue one large read per physically
// contiguous run; block maps, inodes, group descriptors and parsed
// directories are kept in bounded LRU caches.
//
// # Supported
//
//   - ext2, ext3 and ext4 (reported by features: ext4-only features give
//     "ext4", a journal "ext3", otherwise "ext2"); block sizes 1-64 KiB;
//     32- and 64-bit group descriptors; meta_bg, flex_bg, sparse_super(2),
//     bigalloc; inode sizes 128 and larger.
//   - Extent trees of any legal depth (unwritten extents read as zeros and
//     count as holes); classic direct/indirect/double/triple block maps
//     (zero pointers are holes); inline_data files, directories and
//     symlinks; fast and slow symlinks; device nodes, FIFOs, sockets.
//   - Linear and htree directories. ReadDir parses all blocks linearly and
//     caches a name index per directory; Lookup uses that index, or, in a
//     large htree directory not parsed yet, hashes the name (half_md4,
//     signed or unsigned) and reads only the index path and one leaf,
//     falling back to the full parse for anything unusual (other hash
//     versions, collision chains, damaged index). Casefold names are
//     returned as stored and looked up exactly.
//   - Attributes: 32-bit uid/gid, nanosecond timestamps with the extra
//     epoch bits, 64-bit sizes, huge_file block counts. Like the kernel,
//     an inline-data file reports at least its size in 512-byte blocks.
//     Rdev uses the Linux dev_t encoding (major<<8 | minor low byte |
//     minor high bits <<12).
//   - metadata_csum: superblock, inode and extent block checksums are
//     verified (crc32c); a mismatch is an error wrapping partinfo.ErrCorrupt.
//     Directory block and group descriptor checksums are not checked.
//   - Crash-consistent images (needs_recovery set, as in a snapshot of a
//     mounted filesystem): the internal jbd2 journal (v2/v3 checksums,
//     64-bit, revoke records) is replayed in memory at Open; reads see the
//     newest committed copy of each block, the image is never written.
//   - SeekData/SeekHole come from the block map. Offsets at or past the end
//     give an error wrapping partinfo.ErrNoData, like lseek's ENXIO.
//
// Extended attributes (Xattrs, partinfo.XattrReader): entries in the inode
// (after i_extra_isize), in the xattr block (i_file_acl; checksum checked
// with metadata_csum) and values in EA inodes (ea_inode), listed like the
// kernel (inode first, then block; system.data and unknown indexes
// hidden); POSIX ACLs converted from ext4's on-disk form to the Linux
// xattr format.
//
// # Refused or not done
//
//   - INCOMPAT features compression, encrypt, dirdata, journal_dev and any
//     unknown INCOMPAT bit: Open fails with an error naming them. Unknown
//     RO_COMPAT features are accepted (read-only access is what they allow).
//   - Fast-commit journal blocks are not replayed, nor are external journal
//     devices; a journal that cannot be parsed is ignored (FS.JournalReplay
//     reports why) and the main filesystem is read as it stands.
//   - crtime is not reported.
//
// Corrupt input never panics: sizes, block numbers, tree depths, entry
// lengths and indirect-map work are bounded and checked (FuzzExt4). The
// reader does not recover from panics itself: callers reach it through
// partinfo/fsopen, whose partinfo.SafeOpen and partinfo.Safe turn an
// unforeseen fault into an error wrapping partinfo.ErrCorrupt.
package ext4

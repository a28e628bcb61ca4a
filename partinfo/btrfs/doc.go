// Package btrfs is cairn's read-only btrfs reader, implementing
// partinfo.Filesystem over one device (Open) or the devices of a
// filesystem of several (OpenDevices; Scan groups them by UUID).
//
// # Vocabulary
//
//   - Superblock (at 64 KiB): tree roots, node and sector sizes, the
//     bootstrap chunk array; its CRC-32C is checked.
//   - Device: a disk or partition with a superblock of the filesystem;
//     its dev_item names its devid and device UUID. The newest superblock
//     (highest generation) describes the filesystem.
//   - Chunk: maps logical addresses to stripes (devid, device offset,
//     device UUID). Profiles read: single, DUP, RAID1/1C3/1C4 (every
//     stripe a whole copy: the next copy when one fails its checksum or
//     its device is missing), RAID0 (stripe_len units round-robin over
//     the stripes) and RAID10 (round-robin over groups of sub_stripes
//     mirrors). RAID5/6 chunks are refused (ErrUnsupported); a read that
//     needs a device not given fails with ErrMissingDevice; a device
//     opened alone with Open says ErrMultiDevice.
//   - Tree block (node): header (checksum, own address, fsid, level) and
//     items (leaf) or key pointers (internal); every block's CRC-32C,
//     address, fsid, level and key order are checked.
//   - Root tree: ROOT_ITEMs locate the FS tree (5) and every subvolume
//     and snapshot tree; the "default" dir item names the default
//     subvolume, which is the root of the view.
//   - Inode: the view's inode number is tree index << 40 | objectid, so
//     subvolumes (which reuse objectids) stay apart; a directory entry
//     pointing at a subvolume leads to that tree's root directory, as the
//     kernel shows it.
//   - File extents: inline, regular and prealloc (zeros); holes between
//     extents; zlib, LZO (btrfs's per-sector segments) and zstd
//     compression. Data checksums (csum tree, CRC-32C per sector) are
//     verified for every read: a mismatch is an error wrapping
//     partinfo.ErrCorrupt (EIO in the mount), never wrong bytes.
//   - Xattr item: (inode, 24, name hash) holding one or more dir-item
//     records (name, value); listed in key order as the kernel's
//     listxattr does (partinfo.XattrReader).
//
// Only the crc32c checksum type is read (mkfs.btrfs's default).
package btrfs

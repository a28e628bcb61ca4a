// Package fsopen opens a detected volume with the right read-only reader:
// ext2/3/4 (partinfo/ext4), XFS (partinfo/xfs), NTFS (partinfo/ntfs),
// FAT12/16/32 (partinfo/fat), exFAT (partinfo/exfat) and single-device
// btrfs (partinfo/btrfs). Everything else gets a
// *partinfo.UnreadableError whose message is the ERROR.txt a user sees.
//
// Open is how the mount and the CLI reach a reader: it opens through
// partinfo.SafeOpen and returns the filesystem wrapped in partinfo.Safe,
// the reader boundary where a reader's panic becomes an error.
//
// It is a package of its own so that the readers can import partinfo
// without an import cycle.
package fsopen

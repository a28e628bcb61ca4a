// Package partinfo reads what is on a disk image of a recovery point,
// read-only and straight from its bytes: the partition table, what each
// volume holds, and (through its reader packages) the files inside.
//
//	disk ──ReadTable──▶ Table{Partitions}      MBR (with EBR logical partitions), GPT (backup on damage), none
//	volume ──Detect──▶ Detection               ext2/3/4, xfs, ntfs, fat, exfat, btrfs, lvm2, md, luks, ...
//	volume ──fsopen.Open──▶ Filesystem          through SafeOpen; every method through Safe
//	Filesystem ──AsFS──▶ io/fs.FS               paths, symlinks, ReadDirFS/StatFS/ReadLinkFS
//
// Volume discovery across a point's disks (partitions, MD arrays, LVM
// volume groups, LDM volumes) is partinfo/volumes'; the readers are
// partinfo/ext4, xfs, ntfs, fat, exfat and btrfs; partinfo/fsopen picks
// one for a Detection; partinfo/lvm, md and ldm assemble volumes.
//
// # Vocabulary
//
//   - Table, Partition, TableType: a disk's partition table; Partition
//     numbers follow the kernel's (p5 and up are MBR logical partitions;
//     Extended marks the container).
//   - Detection: what a volume holds (Type, label, UUID, used/free when
//     the superblock says); TypeUnknown when nothing is recognised.
//     Detect never fails.
//   - Region: a named window of an io.ReaderAt (a partition or a whole
//     disk), the device the volume managers scan.
//   - Filesystem: the read-only interface every reader implements,
//     addressed by inode number (Stat, ReadDir, Lookup, Readlink, ReadAt,
//     SeekData, SeekHole); Attr, DirEntry and Info are its results;
//     XattrReader and XattrGetter add extended attributes.
//   - Reader boundary: Safe (methods) and SafeOpen (Open) turn a reader's
//     panic into an error wrapping ErrCorrupt that names the filesystem
//     and operation. Every call from the mount or the CLI into a reader
//     goes through them (fsopen.Open); they are the one place a reader's
//     panic is recovered. ReadTable and Detect recover their own.
//   - Errors: ErrCorrupt (damaged structure), ErrNotDir, ErrNotSymlink,
//     ErrNotRegular, ErrNoData (no data after an offset, like ENXIO),
//     ErrNoXattrs; *UnreadableError for a volume cairn cannot browse,
//     whose message is the ERROR.txt a user sees.
package partinfo

// Package guest builds the fs/ directories of the FUSE mount: a disk's
// volumes (p1, p2, ... or whole) and, inside each, the guest filesystem
// read-only through package partinfo, straight from the stored blocks;
// and (VolumeProvider) fs/md, fs/lvm and fs/ldm for volumes that span a
// point's disks. A volume that cannot be browsed shows ERROR.txt instead.
//
// # Vocabulary
//
//   - Guests (New): one mount's FSProvider and VolumeProvider, which
//     cairn mount and serve install; Provider and VolumeProvider make one
//     each with its own Guests.
//   - open set (openset.go): the volumes whose filesystem is open, by
//     last use; beyond the bounds (DefaultMaxOpen volumes, or
//     DefaultMaxOpenBytes held by their chunk and directory caches
//     together) the least recently used idle one is closed (volState dropped: reader, chunk and dir caches)
//     and reopened by its next request (acquire/release).
//   - diskDir: fs/<disk>, one volumeDir per volume that
//     partinfo/volumes.OfDisk finds.
//   - volumeDir: fs/<disk>/<volume> (or an MD array, LV or LDM volume):
//     the root directory of the filesystem, opened on first use through
//     partinfo/fsopen, or a directory holding only fusefs.ErrorFileName.
//   - guestNode: a file, directory, symlink or special file of a guest
//     filesystem; reader errors become EIO and a log line naming the VM,
//     point, disk, volume and inode.
//   - staticDir: fs/md, fs/lvm, fs/lvm/<vg>, fs/ldm: fixed children plus
//     ERROR.txt listing the problems found while assembling them.
//   - chunk cache, dir cache, xattr cache: 64 KiB chunks of the disk
//     under a reader's small reads; listings that answer lookups; an
//     inode's extended attributes.
//   - listing ahead (prefetch.go): ext2/3/4 subdirectories listed in the
//     background once their parent is listed.
//   - store-ahead (storeahead.go): reading a small ext or XFS file from
//     its start pushes the next small files of its directory into the
//     kernel's page cache (NOTIFY_STORE), so a tar sends no READ for them.
//   - bare entries, probe (bareentries.go): a listing's files answered
//     without attributes (node id 0) while the walk only reads names and
//     types, as probes (about one listing in 32) find out.
//   - salt: the high bits that give each volume its own inode number
//     range in the mount, fixed when the volume is built, so a reopened
//     volume keeps its inode numbers.
//
// Volume discovery (partitions, MD, LVM, LDM) is partinfo/volumes'; the
// EROFS answers (fusefs.ReadOnly, fusefs.ReadOnlyOpen), the ERROR.txt name
// and the cached directory handles (fusefs.OpenCachedDir, OpenCachedDirLookup)
// are fusefs's.
//
// Panics: this package has no recover. Filesystem readers are reached only
// through partinfo's reader boundary (fsopen.Open, partinfo.SafeOpen and
// partinfo.Safe), which turns a reader's panic into an error wrapping
// partinfo.ErrCorrupt: ERROR.txt when opening, EIO for a later call.
// Anything else is go-fuse's handler's, the mount's one recover (EIO).
package guest

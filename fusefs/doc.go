// Package fusefs shows a cairn repository as a read-only FUSE file system:
//
//	/<mount>/
//	  <vm>/
//	    latest -> <newest point id>
//	    <point>/                 e.g. 2026-11-23T01-00-00Z
//	      info.json              the point's record (consistency, disks, sizes, stats)
//	      disks/<disk>.img       the raw disk as it was at the point
//	      disks/<disk>.vmdk      monolithic-flat VMDK descriptor over <disk>.img
//	      fs/<disk>/...          guest filesystems (only with Options.FSProvider)
//	      vm/config.json         files committed with the point (blockmap attachments):
//	      vm/<name>.vmx          the VM's configuration, .vmx and .nvram at backup time
//	      vm/<name>.nvram
//	      boot/result.json       the last boot check (cairn verify-boot), kept beside the
//	      boot/screenshot.png    point in Options.BootChecksDir (<repo>/bootchecks/<vm>/<point>/)
//
// Committed recovery points never change, so everything under a point is
// cached by the kernel (keep-cache, long attribute and entry timeouts);
// the root and the VM directories use short timeouts and re-read the
// repository catalog when it changes, so new points appear and deleted
// points disappear without remounting.
//
// Disk images are read through shared blockmap.DiskReaders (one per point
// and disk, kept in a bounded cache). SEEK_DATA and SEEK_HOLE answer the
// point's block map, so cp --sparse and qemu-img keep holes. Every read of
// a point is checked against the catalog afterwards: once a point has been
// deleted, reads of it fail with EIO rather than return bytes that pruning
// may have released. Bytes that fail their checksum give EIO and a log line
// naming the VM, point, disk and offset.
//
// Every write (open for writing, create, chmod, unlink, ...) fails with
// EROFS; the mount itself is read-only as well.
//
// # Vocabulary
//
//   - tree: one mount's state (repository, caches, catalog watcher); nodes
//     (rootNode, vmDir, pointDir, disksDir, imgFile, fsDir, ...) hold a
//     pointer to it.
//   - ReadOnly, ReadOnlyOpen: the EROFS answers every node embeds or
//     calls, exported for the nodes providers build (fusefs/guest).
//   - FSProvider, VolumeProvider: hooks that build fs/<disk> and the
//     directories of fs/ that span disks (fusefs/guest implements both);
//     DiskSource and PointSource are what they get.
//   - ErrorFileName (ERROR.txt): the one file of a directory under fs/
//     whose content cannot be shown; it says why.
//   - OpenCachedDir: the handle of a directory whose listing never changes;
//     OpenCachedDirLookup also decides per entry what a READDIRPLUS answer
//     carries (DirEntryLookup; an error leaves the entry bare, node id 0).
//   - WithDots: every listing starts with "." and ".." (the directory's and
//     its parent's inode numbers), as a kernel filesystem's; READDIRPLUS
//     gives them no attributes, so they make no LOOKUP and no dentry.
//
// Panics: go-fuse's handler is the mount's one recover (MountOptions'
// PanicHandler logs the stack and answers EIO). fusefs adds none of its
// own, not around the providers either; guest filesystem readers recover
// at partinfo's reader boundary (partinfo.Safe).
package fusefs

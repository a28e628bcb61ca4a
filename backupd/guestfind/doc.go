// Package guestfind finds files in the guest filesystems of a VM's
// recovery points without a FUSE mount: the history of one path across
// every point (which distinct versions there were and where each one can
// be restored from) and a search by name across one point or all of them.
// It reads the filesystems through the same readers as `cairn files`,
// `cairn restore-file` and the mount (partinfo/volumes, partinfo/fsopen).
//
// # Vocabulary
//
//   - Source: where points and disks come from: the local repository
//     (Local) or a remote (the CLI adapts blockmap/remote). A Disk that
//     tells which generation holds each block (a local one) allows the
//     reuse below; a remote one is read at every point.
//   - Filesystem name: where a guest filesystem lives in a point, as the
//     mount's fs/ directory names it: <disk>/<part> (sda/p1, sda/whole)
//     or a volume path across disks (lvm/<vg>/<lv>, md/<array>,
//     ldm/<volume>, btrfs/<name>). FS carries it with the --disk/--part
//     or --volume that select it in `cairn files` and `restore-file`.
//   - Selector: which filesystems a call looks at (a disk and partition,
//     or a volume; the zero Selector means every filesystem of a point).
//   - State: what one point holds at a path of one filesystem: absent, an
//     entry (type, mode, owner, size, mtime, symlink target and, for a
//     regular file, the SHA-256 of its bytes), or unreadable (the point's
//     disk or filesystem could not be read: a PointError).
//   - Version: one distinct State that is present. Two states are the same
//     version when type, mode, owner, size, mtime, target and content hash
//     are all equal: a file rewritten with the same size and mtime but
//     other bytes is a new version. Versions are numbered 1, 2, ... in
//     the order the walk meets them; a version seen again later (a file
//     put back as it was) keeps its number.
//   - Run: consecutive points (by time) holding the same State. History
//     is a list of runs per filesystem; search groups identical hits
//     (same filesystem, path and metadata) into runs the same way, so 60
//     points of an unchanged file are one line.
//   - Browser: one point open for browsing (Browse): every filesystem of
//     the point found and opened once, listed with its error when it
//     cannot be read; Lookup and ReadDir read entries from it (the web
//     console's file endpoints).
//   - Dir page: ReadDirPage's answer to a DirQuery: at most Limit entries
//     of a directory after a cursor name (After) whose names hold Filter,
//     case-insensitively, with the counts (Total, Matched, Offset); only
//     the page's entries are stat'ed.
//   - Read set: the repository blocks a point's work read (every read of
//     every disk goes through a recording reader). A block with the same
//     generation in two points of a VM holds the same bytes (see
//     blockmap.DiskReader.DataRuns), so when every block of the previous
//     point's read set has the same generation in the next point, the
//     readers would see the very same bytes and give the very same answer:
//     the result is reused without reading (Stats.Reused). This is exact,
//     never a guess from metadata.
//   - Diff: what changed in the guest files between two points of a VM
//     (`cairn diff`, the API's .../diff): filesystems paired by name,
//     entries by path, every entry of both trees looked at. A Change is
//     Added, Deleted, Modified (content, or a symlink's target),
//     TypeChanged or Metadata, with the Fields that differ and both
//     Sides (type, mode, owner, size, mtime, target, hard link, entropy).
//   - Shared blocks: the Diff's shortcut. When a file has the same
//     extents (partinfo.ExtentReader) in both points on the same disk,
//     only its bytes in repository blocks whose generation differs are
//     read; a file all of whose blocks are shared is known equal without
//     a read (DiffStats.SameBlocks). Anything else is read in both points
//     and compared byte for byte.
//   - Encrypted: a modified file whose first EntropySample bytes went
//     from below LowEntropy to at least EncryptedEntropy bits per byte
//     (LooksEncrypted), the ransomware fingerprint; DiffSummary counts
//     changes and bytes per kind and per top-level directory.
//
// # Errors
//
// A point that cannot be read (disk, volume or filesystem) never aborts a
// history or a search: it is reported per point and filesystem as a
// *PointError and the walk goes on. ErrPathNotFound says a path exists in
// no point; an unknown VM is blockmap's PointNotFoundError (ErrNotFound).
// Every blocking call takes a context and stops when it is cancelled.
package guestfind

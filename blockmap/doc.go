// Package blockmap is cairn's repository: the store of recovery points.
//
// A repository is a directory:
//
//	<repo>/cairn.json                 format version, block size, created
//	<repo>/index/                     Badger: block versions, catalog, sessions
//	<repo>/images/<disk-id>/<gen>.img sparse delta image of one disk generation
//	<repo>/locks/<vm>.lock            one writer per VM at a time (flock)
//	<repo>/index.lock                 readers share, committers exclude (flock)
//	<repo>/catalog.seq                bumped on every catalog change
//
// Each backup of a VM is a generation g (counting up from 1). The delta
// image of generation g holds, at their natural offsets, only the blocks
// that changed in g; the rest are holes. The index maps
// (disk, block, ^g) to what generation g holds for the block (data with
// its hash, BLAKE3 or SHA-256 in older repositories, and its CRC-32C; or
// zero). Block b of recovery point g is the newest version with
// generation <= g: the inverted generation makes it the first key at or
// after (disk, block, ^g).
//
// A recovery point becomes visible only when its catalog record is
// committed, after its delta images are fsynced. A session that dies
// leaves a session record; the next writer of that VM sweeps it (index
// entries and delta images of the dead generation). Deleting points never
// copies data: versions no retained point can see are removed from the
// index and their bytes are released with fallocate(PUNCH_HOLE).
//
// The Badger index is opened only for the moment it is needed (shared for
// readers, exclusive for commits), so a FUSE mount, an export and an
// import can run in different processes on one repository at once.
package blockmap

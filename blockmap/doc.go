// Package blockmap is cairn's repository: the store of recovery points.
//
// A repository is a directory:
//
//	<repo>/cairn.json                 format version, block size, block hash, created
//	<repo>/index/                     Badger: block versions, catalog, VM records
//	<repo>/images/<disk-id>/<gen>.img sparse delta image of one disk generation
//	<repo>/sessions/<vm>.json         the VM's open writer session
//	<repo>/locks/<vm>.lock            the VM's lock (VMLock): one backup, import, prune... at a time (flock)
//	<repo>/index.lock                 readers share, committers exclude (flock)
//	<repo>/catalog.seq                catalog sequence number and recent deletions
//
// (jobs/ and serve.json belong to the backup side; docs/repository.md
// lists every file.)
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
// A disk's lineage (DiskInfo.Lineage) is the generation where its history
// begins for a point: a disk new to a point (first backup, or back after
// points without it) starts one at the point's generation, and versions
// older than the lineage (an earlier disk of the same name) are not read.
// A cairn from before lineages would read them, so the first commit of a
// disk id's second life raises cairn.json from FormatBase to FormatLineage,
// which such a cairn refuses (format.go; docs/repository.md, "Upgrading").
// The span of a disk in a point is [lineage, gen]. versionIter is the one
// loop over a disk's stored versions (each with the generation of the next
// newer one, or only the newest in a span); walkMap, the writer's base,
// verify, check and collection all walk with it. Each point records per disk its number of data
// blocks and a digest of its block map (mapDigest), recomputed by OpenDisk
// and Verify, so index damage is named (ErrIndexDamaged), never served;
// Badger's checksums are on and its tables and MANIFEST are checked before
// it opens them (indexcheck.go).
//
// A new generation builds on the session's base, the VM's highest
// generation, whatever the points' times. When the newest point by time is
// an older generation (points pulled out of time order), Session.BaseDiff
// lists the blocks written after it up to the base: a backup that reads
// only what changed since the newest point reads those too.
//
// A writer may give each disk a ContentMeter, shown every data block the
// point stores (changed, not zero), whose figures are kept in the disk
// (DiskInfo.Content), and the point a Judge, called at commit with the
// point and the VM's earlier points, whose answer is kept as
// Point.Verdict (backupd/anomaly uses both). PruneWith takes a PruneGuard
// that names points to keep beyond the policy (PruneResult.Protected).
//
// A recovery point becomes visible only when its catalog record is
// committed, after its delta images are fsynced. A session that dies
// leaves a session record; the next writer of that VM sweeps it (index
// entries and delta images of the dead generation). Deleting points never
// copies data: the deletion is made durable, then published in
// catalog.seq (CatalogState), and only then are the versions no retained
// point can see removed from the index and their bytes released with
// fallocate(PUNCH_HOLE); if it cannot be published nothing is released
// (ErrNotReleased) until a later writer can.
//
// The Badger index is opened only for the moment it is needed (shared for
// readers, exclusive for commits), so a FUSE mount, an export and an
// import can run in different processes on one repository at once.
// A Repo keeps the catalog it read last while catalog.seq says nothing
// changed, and decodes only new point records after a change
// (catalogcache.go); operations on one VM read that VM's records only.
//
// Errors are sentinels (ErrNotFound, ErrInvalid, ErrIndexDamaged, ...) or
// types that match them (RepoMissingError, PointNotFoundError, BlockError,
// VMLockedError);
// they name the thing, and the CLI adds which command fixes it.
package blockmap

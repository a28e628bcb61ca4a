// Package remote is the offsite twin of a cairn repository: recovery points
// copied to an S3-compatible object store (Ceph RGW, MinIO, AWS, Wasabi,
// Backblaze), deduplicated, compressed, encrypted and optionally immutable.
//
// A Remote is one bucket opened with its key. Its objects:
//
//	cairn/config          plaintext: format, KDF parameters, the wrapped master key
//	cairn/packs/<id>      a pack: encrypted blobs, one per distinct block
//	cairn/index/<id>      the encrypted index of the pack with the same id
//	cairn/maps/<id>       an encrypted full block map (every data block of a point's disks → blob)
//	cairn/points/<name>   the encrypted manifest of one recovery point
//	cairn/writer          the encrypted claim of the appliance that writes the remote (Writer)
//
// Pack ids are random; a manifest's name is a keyed MAC of the VM name and
// point id. The store sees no VM or disk names, no block hashes and no
// plaintext.
//
// A block id is the keyed BLAKE3 MAC of a block's bytes: equal blocks of
// any VM and point share one blob (deduplication), and the store cannot
// test a guess of a block's content. A blob is
// nonce || XChaCha20-Poly1305(mode || zstd(block)) with the block id as
// additional data; a blob read back is authenticated and its plaintext MAC
// must equal its id.
//
// A block map maps each data block of a disk to its blob (pack, offset,
// length, size, id). A full map is its own object (a map object), shared
// by points like a pack. A manifest holds the point (disks, sizes, meta,
// info.json facts), the packs it reads, a reference to one map object and
// per disk the delta on that map (changed and removed blocks; depth one:
// never a delta on a delta), and the bytes of the point's attachments
// (small: blockmap caps them). Replicate writes a new full map when the
// delta would pass fullMapShare of it. Manifests of format 1 hold each
// disk's full map inline instead. The map is stored before the manifest
// and the manifest last: a point is visible remotely only when all its
// data and its map are.
//
// The block cache (under the local repository) knows which blocks the
// remote holds. It is rebuilt from the remote's pack indexes: each run
// lists cairn/index/ and fetches the indexes it does not know, so an
// interrupted replication resumes by uploading only missing packs.
//
// The master key (encryption, MAC and name keys) is random and stored in
// cairn/config wrapped by a key derived with argon2id from a key file or a
// passphrase. Losing the key file or passphrase means losing the data.
// With Options.KeyCache the unwrapped master key is kept locally, sealed
// with a key BLAKE3-derived from the secret, so later opens skip argon2id.
// Every config cairn writes carries a seal: a MAC of its fields under a
// key derived from the master key. Rekey wraps the same master key with a
// new secret (the data is not re-encrypted) and writes a new sealed
// config; an older config version that opens while a newer one bears the
// seal is a superseded key (ErrKeyChanged), not a tampered config.
//
// One writer per remote: with Options.Writer, Replicate, Prune and Forget
// claim an unclaimed remote for that appliance and refuse one another
// appliance claimed (ErrOtherWriter); TakeOver moves the claim (disaster
// recovery). Reads never check it.
//
// Stats counts what a remote holds from its listing and manifests.
//
// Replication reads a local disk's blocks in read batches (up to 64
// blocks, their runs read at once, two batches ahead of hashing and
// sealing); the disks of the first point to copy are preopened while the
// remote is listed.
//
// Pull copies a remote point into a local repository. It downloads only
// what the repository lacks: a local point is the twin of a remote point
// when this machine pulled it from the remote (a pull record in
// PullOptions.CacheDir) or replicated it there (its replicate state), and
// the remote still has that point's manifest. The VM's newest local point,
// when it is a twin, is the pull's base: blocks whose id equals the
// base's are kept, blocks the base holds elsewhere are copied from the
// local disk (checked against the id), and only the rest is fetched, in
// ranged GETs of just their blobs (fetchBlobs: gaps of up to 64 KiB read
// through, runs of up to 8 MiB, four in flight). A pulled point is also
// recorded as replicated to the remote it came from (its replicate state,
// naming the manifest's generation and map: pullstate.go), so the next
// point of the VM replicates incrementally on it after a disaster
// recovery. A pulled point keeps the manifest point's suspicious-change
// verdict (blockmap.Point.Verdict) and its disks' content figures: they
// are not judged again.
//
// PruneWith is Prune with a blockmap.PruneGuard, which sees each VM's
// remote points (with the verdicts their manifests carry) numbered by
// time and names the points to keep whatever the policy says
// (backupd/anomaly.Guard keeps a VM's last clean point).
//
// A DiskReader that is read in order fetches ahead (read-ahead) up to
// 32 MiB of blocks into its block cache.
//
// Bandwidth: with StoreOptions.Limiter (or Remote.SetLimiter) every
// request and response body of the store streams through one
// internal/ratelimit Limiter, shared by the run's parallel uploads and
// ranged GETs; a request's stall timeout does not count the limiter's
// waits (limit.go).
//
// Immutability: with ImmutableDays every object is written with an Object
// Lock COMPLIANCE retention; Extend renews the retention of objects that
// the remote's points still reference. Objects are read at the version
// that was written, and a replaced or delete-marked manifest, index or
// config is read from its older version, so neither an overwrite nor a
// delete by someone holding the credentials hides locked data.
package remote

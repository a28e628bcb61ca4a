package remote

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairnbackup/cairn/internal/lru"
)

// FormatVersion is the remote format this package writes and reads.
const FormatVersion = 1

// DefaultPackSize is the size a pack grows to before it is uploaded:
// 32 MiB. Requests cost money and time on every store (a PUT is about as
// dear as storing 1-2 MiB for a month on the big clouds), so a pack holds
// hundreds of blocks; 32 MiB stays one PUT (no multipart), keeps a few
// packs in flight within a bounded buffer, and a lost upload costs little
// to redo. Reads never fetch a whole pack: they ask for the ranges of
// the blobs they need.
const DefaultPackSize = 32 << 20

// Options open a remote.
type Options struct {
	Store StoreOptions
	// Secret is the key file's contents or the passphrase.
	Secret []byte
	// ImmutableDays > 0 writes every object with an Object Lock
	// COMPLIANCE retention of this many days.
	ImmutableDays int
	// PackSize overrides DefaultPackSize (tests use small packs).
	PackSize int
	// KeyCache, when set, is a file where Open keeps the master key
	// sealed with a key derived from Secret by BLAKE3 (not argon2id), so
	// later opens skip the memory-hard derivation (0.2-2 s of CPU). The
	// file is as sensitive as Secret itself: it opens only with Secret,
	// but guessing a passphrase against it is cheap. Keep it beside the
	// key file, on the machine that already holds Secret.
	KeyCache string
	// Writer, when set, identifies this appliance: Replicate, Prune and
	// Forget claim an unclaimed remote for it and refuse a remote another
	// appliance claimed (ErrOtherWriter; TakeOver moves the claim).
	Writer *Writer
	Logger *slog.Logger
}

// config is the plaintext object cairn/config.
type config struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	KDF     KDF       `json:"kdf"`
	Key     []byte    `json:"key"` // the master key, wrapped
	// ImmutableDays is what init was asked for; writers keep using their own setting.
	ImmutableDays int `json:"immutable_days,omitempty"`
	// Rekeyed is when Rekey last wrapped the master key anew (nil: never).
	Rekeyed *time.Time `json:"rekeyed,omitempty"`
	// Seal is a MAC of the fields above under a key derived from the
	// master key (configSeal): it tells a config cairn wrote from one
	// someone else put over it. Configs written before it existed have none.
	Seal []byte `json:"seal,omitempty"`
}

// Remote is an opened remote: a bucket and its master key.
type Remote struct {
	st       *store
	keys     *keys
	opts     Options
	log      *slog.Logger
	packSize int
	uploads  int           // packs uploaded at once (0: uploadWorkers' default)
	enc      *zstd.Encoder // default level: manifests, blocks that compress
	fast     *zstd.Encoder // fastest level: tells incompressible blocks
	dec      *zstd.Decoder

	readCache      *lru.Cache[ID, []byte] // shared by readers when set
	readCacheBytes int                    // its size
	lockOn         bool                   // the bucket has Object Lock (known during a prune)
	keyCached      bool                   // Open took the master key from Options.KeyCache
	afterPack      func(n int64)          // tests: called after each stored pack and its index
	blobGets       atomic.Int64           // ranged GETs of blobs made by readers (tests)
	getBufs        sync.Pool              // of *[]byte of maxRun bytes: ranged GETs' buffers
	blobsFetched   atomic.Int64           // blobs those GETs covered (tests)
	beforeRead     func(b int64)          // tests: called before blocks from b on are read
	conf           *loadedConfig          // the config Open unwrapped the master key from
	inlineMaps     bool                   // tests: write manifests of format 1 (full maps inline)
	beforeManifest func(m *manifest)      // tests: called before a point's manifest is stored
	mapGrace       time.Duration          // how old an unreferenced map must be for prune (0: orphanAge)
}

// Init prepares an empty bucket (created when missing; with Object Lock
// when ImmutableDays is set) as a remote. It refuses a bucket that already
// holds a remote or other objects, and with ImmutableDays a bucket without
// Object Lock.
func Init(ctx context.Context, o Options) error {
	st, err := newStore(o.Store)
	if err != nil {
		return err
	}
	if len(o.Secret) == 0 {
		return errors.New("init remote: no key: give a key file or a passphrase")
	}
	exists, err := st.cl.BucketExists(ctx, st.bucket)
	if err != nil {
		return st.s3err("look up bucket", st.bucket, err)
	}
	if !exists {
		if err := st.makeBucket(ctx, o.Store.Region, o.ImmutableDays > 0); err != nil {
			return err
		}
	}
	if o.ImmutableDays > 0 {
		locked, err := st.objectLock(ctx)
		if err != nil {
			return err
		}
		if !locked {
			return fmt.Errorf("bucket %s: %w", st.bucket, ErrNoObjectLock)
		}
	}
	objs, err := st.list(ctx, "", true)
	if err != nil {
		return err
	}
	for _, ob := range objs {
		if ob.Name == configName {
			return fmt.Errorf("bucket %s: %w", st.bucket, ErrAlreadyInitialized)
		}
	}
	if len(objs) > 0 {
		return fmt.Errorf("bucket %s holds %d objects (first: %s): %w", st.bucket, len(objs), objs[0].Name, ErrNotEmpty)
	}
	master := make([]byte, masterKeyLen)
	if _, err := rand.Read(master); err != nil {
		return err
	}
	kdf := defaultKDF()
	wrapped, err := wrapMaster(kdf, o.Secret, master)
	if err != nil {
		return err
	}
	cfg := config{Format: FormatVersion, Created: time.Now().UTC(), KDF: kdf, Key: wrapped, ImmutableDays: o.ImmutableDays}
	cfg.Seal = configSeal(&cfg, master)
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	_, err = st.put(ctx, configName, data, putOptions{retainUntil: retainUntil(o.ImmutableDays)})
	return err
}

func (s *store) makeBucket(ctx context.Context, region string, lock bool) error {
	err := s.cl.MakeBucket(ctx, s.bucket, makeBucketOptions(region, lock))
	return s.s3err("create bucket", s.bucket, err)
}

func retainUntil(days int) time.Time {
	if days <= 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(days) * 24 * time.Hour).UTC()
}

// Open opens an initialized remote with its key. A wrong key fails with
// ErrWrongKey before anything is written.
func Open(ctx context.Context, o Options) (*Remote, error) {
	st, err := newStore(o.Store)
	if err != nil {
		return nil, err
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("open remote: no key: give a key file or a passphrase")
	}
	r := &Remote{st: st, opts: o, log: o.Logger, packSize: o.PackSize}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.packSize <= 0 {
		r.packSize = DefaultPackSize
	}
	// Older versions are tried when the newest does not open: an attacker
	// can put a new version over a locked object but not remove the old one
	// (loadConfig, keyconfig.go).
	start := time.Now()
	lc, err := r.loadConfig(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("bucket %s: %w (run cairn remote init)", st.bucket, ErrNotInitialized)
	}
	if err != nil {
		return nil, err
	}
	master, fetched := lc.master, lc.fetched
	r.conf, r.keyCached = lc, lc.cached
	// A remote initialized with a retention keeps it even when this
	// machine's configuration says less.
	r.opts.ImmutableDays = max(r.opts.ImmutableDays, lc.cfg.ImmutableDays)
	if r.keys, err = newKeys(master); err != nil {
		return nil, err
	}
	r.log.Debug("remote opened", "bucket", st.bucket, "took", time.Since(start), "config_get", fetched, "key_cached", r.keyCached)
	// One encoder per CPU: blocks are sealed in parallel, and EncodeAll
	// waits for a free encoder. The window is 1 MiB, not the default
	// 8 MiB: each encoder keeps a history buffer of twice its window
	// (16 MiB by default, 64 MiB for two levels on two CPUs), and what
	// is compressed is a block of at most a few hundred KiB or a
	// manifest made mostly of random block ids.
	conc := runtime.GOMAXPROCS(0)
	r.enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(conc), zstd.WithWindowSize(encoderWindow))
	r.fast, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(conc), zstd.WithWindowSize(encoderWindow))
	r.dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
	return r, nil
}

// encoderWindow is the zstd window of what cairn compresses.
const encoderWindow = 1 << 20

// Close releases the remote's codecs.
func (r *Remote) Close() error {
	r.enc.Close()
	r.fast.Close()
	r.dec.Close()
	return nil
}

// readVersions reads object name and hands it to use; when use fails
// (damaged or replaced object) older versions are tried, oldest last. It
// returns use's first error when no version is accepted.
func (r *Remote) readVersions(ctx context.Context, name string, use func([]byte) error) error {
	data, err := r.st.get(ctx, name, "", 0, 0)
	var firstErr error
	if err == nil {
		if firstErr = use(data); firstErr == nil {
			return nil
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	vs, lerr := r.st.versions(ctx, name)
	if lerr != nil || len(vs) == 0 {
		if firstErr != nil {
			return firstErr
		}
		return err
	}
	for _, v := range vs {
		data, gerr := r.st.get(ctx, name, v, 0, 0)
		if gerr != nil {
			continue
		}
		if uerr := use(data); uerr == nil {
			if firstErr != nil || err != nil {
				r.log.Warn("remote object replaced or deleted behind cairn's back; using an older version", "object", name, "version", v)
			}
			return nil
		} else if firstErr == nil {
			firstErr = uerr
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return err
}

// ImmutableDays is the retention new objects get (0: none).
func (r *Remote) ImmutableDays() int { return r.opts.ImmutableDays }

package blockmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// FormatVersion is the newest repository format this package reads and
// writes (format.go: FormatBase, FormatLineage); init writes FormatBase.
const FormatVersion = FormatLineage

// DefaultBlockSize is the block size of new repositories (see docs/repository.md
// for the measurements behind it).
const DefaultBlockSize = 64 << 10

// MinBlockSize and MaxBlockSize bound a repository's block size (a power
// of two between them).
const (
	MinBlockSize = 64 << 10
	MaxBlockSize = 1 << 20
)

// Errors callers can test for with errors.Is.
var (
	ErrNotRepository = errors.New("not a cairn repository")
	ErrNotFound      = errors.New("not found")
	ErrInUse         = errors.New("in use")
	ErrCorrupt       = errors.New("stored data fails its checksum")
	ErrNoData        = errors.New("no data after offset")
	ErrInvalid       = errors.New("invalid argument")
	// ErrUnsupportedFormat: the repository was made by a newer cairn.
	ErrUnsupportedFormat = errors.New("repository format not supported")
	// ErrPointDeleted: the recovery point was deleted while it was being read.
	ErrPointDeleted = errors.New("recovery point was deleted while it was read")
)

// Config is the content of <repo>/cairn.json.
type Config struct {
	Format    int `json:"format"`
	BlockSize int `json:"block_size"`
	// Hash is the block hash algorithm (HashBLAKE3, HashSHA256); empty in
	// repositories made before the field existed, which use SHA-256.
	Hash    string    `json:"hash,omitempty"`
	Created time.Time `json:"created"`
}

// Repo is an open repository. It is safe for concurrent use; it holds no
// index handle between operations, so other processes may use the same
// repository at the same time.
type Repo struct {
	dir    string
	cfg    Config
	log    *slog.Logger
	locker *indexLocker
	ro     roCache
	tables checkedTables
	sum    func([]byte) [32]byte // the block hash (Config.Hash)
	// tuneIndex, when set (by tests), adjusts every Badger open's options.
	tuneIndex func(badger.Options) badger.Options
	modesOnce sync.Once  // the first update makes the whole tree private (modes.go)
	fmtMu     sync.Mutex // guards cfg.Format, which raiseFormat changes (format.go)
	// pointDecodes counts the point records read from the index (tests
	// check with it that listing one VM does not read every VM's).
	pointDecodes atomic.Int64
	// catCache is the catalog read last; updates counts this Repo's
	// index updates, which make it stale (catalogcache.go).
	catCache catalogCache
	updates  atomic.Uint64
}

// InitOptions configure a new repository.
type InitOptions struct {
	BlockSize int // bytes; a power of two from 64 KiB to 1 MiB; 0 means DefaultBlockSize
	// Hash is the block hash algorithm; "" means HashBLAKE3.
	Hash string
}

// Options configure how a repository is opened.
type Options struct {
	Logger *slog.Logger // nil: slog.Default()
}

// Init creates a repository in dir, which must be missing or empty.
func Init(ctx context.Context, dir string, opts InitOptions) error {
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d: %w: use a power of two from 64 KiB to 1 MiB (65536..1048576)", bs, ErrInvalid)
	}
	hash := opts.Hash
	if hash == "" {
		hash = HashBLAKE3
	}
	if _, err := blockHasher(hash); err != nil {
		// blockHasher's advice is for opening a repository made elsewhere.
		return fmt.Errorf("init %s: %w: block hash %q: use %s or %s", dir, ErrInvalid, hash, HashBLAKE3, HashSHA256)
	}
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, "cairn.json")); err == nil {
			return fmt.Errorf("init %s: a repository already exists there", dir)
		}
		return fmt.Errorf("init %s: directory is not empty; choose an empty or new directory", dir)
	case err != nil && errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("init %s: %w: it is a file, not a directory; choose an empty or new directory", dir, ErrInvalid)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("init %s: %w", dir, err)
	}
	if outer := enclosingRepo(dir); outer != "" {
		return fmt.Errorf("init %s: %w: it is inside the repository %s (its files would be taken for that repository's and counted in its size); choose a directory outside it", dir, ErrInvalid, outer)
	}
	// A failed init (a read-only or full filesystem) takes back what it
	// made, so that the next init in the same place is not refused as
	// "not empty".
	created := err != nil // the directory did not exist
	ok := false
	defer func() {
		if ok {
			return
		}
		if created {
			os.RemoveAll(dir)
			return
		}
		for _, name := range []string{"index", "images", "locks", "index.lock", ReserveFileName, ReserveFileName + ".tmp"} {
			os.RemoveAll(filepath.Join(dir, name))
		}
	}()
	for _, sub := range []string{"index", "images", "locks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), DirMode); err != nil {
			return fmt.Errorf("init %s: %w", dir, err)
		}
	}
	r := &Repo{dir: dir, cfg: Config{Format: FormatBase, BlockSize: bs, Hash: hash, Created: time.Now().UTC()}, log: slog.Default()}
	r.locker = newIndexLocker(filepath.Join(dir, "index.lock"))
	if err := r.update(ctx, func(*badger.DB) error { return nil }); err != nil {
		return fmt.Errorf("init %s: create index: %w", dir, err)
	}
	// cairn.json is written last: a directory without it is not a repository.
	data, _ := json.MarshalIndent(r.cfg, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, "cairn.json"), append(data, '\n')); err != nil {
		return fmt.Errorf("init %s: %w", dir, err)
	}
	ok = true
	r.ensureReserve(true)
	return nil
}

// enclosingRepo is the repository that holds dir in one of its
// directories, or "" when none does.
func enclosingRepo(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(filepath.Join(p, "cairn.json")); err == nil && fi.Mode().IsRegular() {
			if _, err := os.Stat(filepath.Join(p, "index")); err == nil {
				return p
			}
		}
		if p == filepath.Dir(p) {
			return ""
		}
	}
}

// Open opens an existing repository.
func Open(ctx context.Context, dir string, opts Options) (*Repo, error) {
	if dir == "" {
		return nil, &RepoMissingError{}
	}
	data, err := os.ReadFile(filepath.Join(dir, "cairn.json"))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, &RepoMissingError{Dir: dir, Inside: enclosingRepo(dir)}
		}
		return nil, &RepoMissingError{Dir: dir, Exists: true, Inside: enclosingRepo(dir)}
	}
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("open repository %s: %w%s", dir, err, ownerAdvice(dir))
	}
	if errors.Is(err, syscall.ENOTDIR) {
		// --repo names a file (its cairn.json, say), not the directory.
		return nil, &RepoMissingError{Dir: dir, Exists: true, Inside: enclosingRepo(dir), File: true}
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w: cairn.json is not valid JSON: %v", dir, ErrNotRepository, err)
	}
	if cfg.Format > FormatVersion {
		return nil, fmt.Errorf("%s: %w: repository format %d was written by a newer cairn, and this cairn reads format %d: run a cairn at least as new as the one that made it", dir, ErrUnsupportedFormat, cfg.Format, FormatVersion)
	}
	if cfg.Format < FormatBase {
		return nil, fmt.Errorf("%s: %w: cairn.json names format %d, and no cairn ever wrote a format below 1", dir, ErrNotRepository, cfg.Format)
	}
	if cfg.BlockSize < 4096 || cfg.BlockSize&(cfg.BlockSize-1) != 0 {
		return nil, fmt.Errorf("%s: %w: block size %d in cairn.json", dir, ErrNotRepository, cfg.BlockSize)
	}
	sum, err := blockHasher(cfg.Hash)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Repo{dir: dir, cfg: cfg, log: log, locker: newIndexLocker(filepath.Join(dir, "index.lock")), sum: sum}
	for _, sub := range []string{"images", "locks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), DirMode); err != nil {
			return nil, fmt.Errorf("open repository %s: %w", dir, err)
		}
	}
	return r, nil
}

// Dir is the repository directory.
func (r *Repo) Dir() string { return r.dir }

// BlockSize is the repository's block size in bytes.
func (r *Repo) BlockSize() int { return r.cfg.BlockSize }

// Config returns the repository configuration.
func (r *Repo) Config() Config {
	r.fmtMu.Lock()
	defer r.fmtMu.Unlock()
	return r.cfg
}

func (r *Repo) imagePath(disk uint32, gen uint32) string {
	return filepath.Join(r.dir, "images", strconv.FormatUint(uint64(disk), 10), strconv.FormatUint(uint64(gen), 10)+".img")
}

func (r *Repo) imageDir(disk uint32) string {
	return filepath.Join(r.dir, "images", strconv.FormatUint(uint64(disk), 10))
}

// writeFileAtomic writes data to path through a temporary file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	return writeFileReplace(path, data, true)
}

// writeFileReplace writes data to a temporary file and renames it over
// path, so readers see the old content or the new, never a mix; with
// durable, the file and the directory are fsynced too.
func writeFileReplace(path string, data []byte, durable bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ValidateName checks a VM or disk name: it becomes a directory or file
// name in the FUSE mount, so it must be a single non-empty path element.
func ValidateName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty: %w", kind, ErrInvalid)
	case name == "." || name == "..":
		return fmt.Errorf("%s name %q: %w: not allowed", kind, name, ErrInvalid)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%s name %q: %w: must not contain '/' or NUL", kind, name, ErrInvalid)
	case len(name) > 200:
		return fmt.Errorf("%s name %q: %w: longer than 200 bytes", kind, name, ErrInvalid)
	}
	return nil
}

// ownerAdvice says who owns the repository in dir and who runs cairn, for
// a permission error: the repository is private to its owner (mode 0700).
func ownerAdvice(dir string) string {
	fi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	name := func(uid int) string {
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			return fmt.Sprintf("uid %d (%s)", uid, u.Username)
		}
		return fmt.Sprintf("uid %d", uid)
	}
	as := "root"
	if st.Uid != 0 {
		as = name(int(st.Uid)) + " or root"
	}
	return fmt.Sprintf(": the repository belongs to %s with mode %04o and cairn runs as %s; run cairn as %s",
		name(int(st.Uid)), fi.Mode().Perm(), name(os.Geteuid()), as)
}

// permissionAdvice follows a permission error inside the repository: it
// names a file that another user owns (typically root, when a cairn run
// as root wrote into a repository that belongs to someone else) and the
// command that gives it back.
func (r *Repo) permissionAdvice() string {
	fi, err := os.Stat(r.dir)
	if err != nil {
		return ""
	}
	owner, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	var other string
	var otherUID uint32
	filepath.WalkDir(r.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || other != "" {
			return filepath.SkipDir
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid != owner.Uid {
				other, otherUID = p, st.Uid
				return filepath.SkipAll
			}
		}
		return nil
	})
	if other == "" {
		return ownerAdvice(r.dir)
	}
	return fmt.Sprintf(": %s belongs to uid %d, not to the repository's owner (uid %d): a cairn run as another user wrote into the repository; give the files back with chown -R %d:%d %s (as root), and run cairn as uid %d",
		other, otherUID, owner.Uid, owner.Uid, owner.Gid, r.dir, owner.Uid)
}

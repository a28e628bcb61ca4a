package blockmap

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// catalogCache keeps the catalog a long-running process (cairn serve, a
// mount) read last, so that status requests, RPO checks and metrics do
// not decode every point record of the repository each time. It is
// valid while catalog.seq (replaced, with its number moved on, by every
// commit and deletion in any process) is the file it was read with and
// this Repo made no update since; and for catalogMaxAge at most, which
// bounds what a writer that could not move catalog.seq on (it logs so)
// leaves unseen.
type catalogCache struct {
	mu   sync.Mutex
	key  catalogKey
	at   time.Time
	vms  []VMSummary
	have bool
	// byKey holds every point record of the last catalog read, decoded,
	// by index key, with the CRC-32C and length of its bytes: the next
	// read decodes only records it does not find here unchanged.
	byKey map[string]decodedPoint
}

// decodedPoint is a point record as read: its decoded Point and the
// CRC-32C and length of the stored bytes.
type decodedPoint struct {
	sum  uint32
	size int
	p    Point
}

func (c *catalogCache) decoded() map[string]decodedPoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey
}

func (c *catalogCache) setDecoded(m map[string]decodedPoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKey = m
}

// catalogKey identifies one state of the catalog: catalog.seq's number
// and inode (a new file for every change), and the Repo's own updates.
type catalogKey struct {
	seq, ino uint64
	updates  uint64
}

// catalogMaxAge bounds how long a cached catalog is used.
const catalogMaxAge = time.Minute

// catalogKey reads the current key; ok is false when catalog.seq is
// missing or unreadable (nothing is cached then).
func (r *Repo) catalogKey() (catalogKey, bool) {
	f, err := os.Open(filepath.Join(r.dir, catalogSeqFile))
	if err != nil {
		return catalogKey{}, false
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return catalogKey{}, false
	}
	buf := make([]byte, 32)
	n, _ := f.Read(buf)
	line, _, found := bytes.Cut(buf[:n], []byte{'\n'})
	if !found {
		return catalogKey{}, false
	}
	seq, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 10, 64)
	if err != nil {
		return catalogKey{}, false
	}
	return catalogKey{seq: seq, ino: st.Ino, updates: r.updates.Load()}, true
}

// cachedCatalog returns a copy of the cached catalog when it is current.
func (r *Repo) cachedCatalog() ([]VMSummary, catalogKey, bool) {
	key, ok := r.catalogKey()
	if !ok {
		return nil, key, false
	}
	c := &r.catCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.have || c.key != key || time.Since(c.at) > catalogMaxAge {
		return nil, key, false
	}
	return copyCatalog(c.vms), key, true
}

// storeCatalog keeps vms, read after key was taken, as the catalog of
// key (a change in between only makes the next call read it again).
func (r *Repo) storeCatalog(key catalogKey, vms []VMSummary) {
	c := &r.catCache
	c.mu.Lock()
	defer c.mu.Unlock()
	c.key, c.at, c.vms, c.have = key, time.Now(), copyCatalog(vms), true
}

// copyCatalog copies the VM list and each VM's point list, so callers may
// sort or change them; points themselves are shared and never changed.
func copyCatalog(vms []VMSummary) []VMSummary {
	out := make([]VMSummary, len(vms))
	for i, v := range vms {
		out[i] = VMSummary{Name: v.Name, Points: slices.Clone(v.Points)}
	}
	return out
}

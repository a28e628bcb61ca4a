package remote

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// ReplicateStats count what a replication did.
type ReplicateStats struct {
	// Replicated are the points copied by this run; Present those the
	// remote already had.
	Replicated []blockmap.Point `json:"replicated"`
	Present    []blockmap.Point `json:"present"`
	// BlocksRead are the data blocks read from the local repository;
	// BlocksNew those the remote lacked (uploaded); the rest were
	// deduplicated against blocks it has.
	BlocksRead int64 `json:"blocks_read"`
	// BlocksUnchanged were not read: an earlier copied point of the VM
	// holds the same version of them.
	BlocksUnchanged int64 `json:"blocks_unchanged"`
	BlocksNew       int64 `json:"blocks_new"`
	BytesRead       int64 `json:"bytes_read"`
	// RawNew are the plaintext bytes of new blocks; PackBytes what they
	// took in packs (compressed and encrypted).
	RawNew    int64 `json:"raw_new"`
	PackBytes int64 `json:"pack_bytes"`
	Packs     int64 `json:"packs"`
	// BytesUploaded counts every object body written (packs, indexes,
	// block maps, manifests).
	BytesUploaded int64 `json:"bytes_uploaded"`
	// Maps are the full block map objects written (a point whose delta
	// on its VM's last map is small gets none); MapBytes their size.
	Maps     int64 `json:"maps"`
	MapBytes int64 `json:"map_bytes"`
	// ManifestBytes is the size of the manifests written.
	ManifestBytes int64 `json:"manifest_bytes"`
}

// ReplicateOptions tune a replication.
type ReplicateOptions struct {
	// CacheDir holds the block cache (see blockCache) and what this
	// machine copied (see pointState); required.
	CacheDir string
	// Progress, when set, is told about each point as it starts.
	Progress func(p blockmap.Point)
}

// Replicate copies the given local points that the remote lacks, oldest
// first. A point's manifest is written only after every pack it refers to
// is stored, so an interrupted run leaves no point that refers to missing
// data; the next run skips the packs already there.
func (r *Remote) Replicate(ctx context.Context, repo *blockmap.Repo, pts []blockmap.Point, o ReplicateOptions) (*ReplicateStats, error) {
	if o.CacheDir == "" {
		return nil, errors.New("replicate: no cache directory")
	}
	start := time.Now()
	pts = append([]blockmap.Point(nil), pts...)
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].Committed.Before(pts[j].Committed) })
	// The block cache, the remote's point list and the manifests of the
	// earlier copied points are fetched at once (independent round trips).
	var (
		wg         sync.WaitGroup
		cache      *blockCache
		have       []objectInfo
		cerr, herr error
	)
	var lerr error
	wg.Add(3)
	go func() { defer wg.Done(); cache, cerr = r.loadCache(ctx, filepath.Join(o.CacheDir, "index")) }()
	go func() { defer wg.Done(); have, herr = r.st.list(ctx, pointsPrefix, false) }()
	go func() {
		defer wg.Done()
		if lerr = r.checkObjectLock(ctx); lerr == nil {
			lerr = r.checkWriter(ctx, "replicate")
		}
	}()
	r.adoptPulled(ctx, repo, o.CacheDir, pts)
	known := r.prefetchPrev(ctx, o.CacheDir, pts)
	pre := r.preopen(ctx, repo, o.CacheDir, pts)
	defer pre.close()
	wg.Wait()
	if lerr != nil {
		return nil, lerr
	}
	if cerr != nil {
		return nil, fmt.Errorf("replicate: read the remote's pack indexes: %w", cerr)
	}
	if herr != nil {
		return nil, herr
	}
	r.log.Debug("replicate: block cache in step with the remote", "packs", len(cache.packs), "points", len(have), "took", time.Since(start))
	present := map[string]bool{}
	for _, ob := range have {
		present[strings.TrimPrefix(ob.Name, pointsPrefix)] = true
	}
	st := &ReplicateStats{}
	for _, p := range pts {
		if present[r.keys.manifestName(p.VM, p.ID)] {
			st.Present = append(st.Present, p)
			continue
		}
		if o.Progress != nil {
			o.Progress(p)
		}
		if err := r.replicatePoint(ctx, repo, p, cache, st, o.CacheDir, present, known, pre); err != nil {
			return st, fmt.Errorf("replicate %s point %s: %w", p.VM, p.ID, err)
		}
		st.Replicated = append(st.Replicated, p)
	}
	return st, nil
}

// pack is a pack being filled or uploaded.
type pack struct {
	id      ID
	data    []byte
	entries []indexEntry
	tokens  int // of the uploader's budget, returned once stored
}

// uploader stores full packs (pack, then its index) in the background.
type uploader struct {
	r        *Remote
	workers  int
	budget   chan struct{} // one token per budgetUnit bytes being uploaded
	budgetMu sync.Mutex
	cache    *blockCache
	st       *ReplicateStats
	ch       chan *pack
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	mu       sync.Mutex
	err      error
	up       atomic.Int64
	stored   atomic.Int64
	// free holds the buffers of stored packs for the next packs: a fresh
	// 32 MiB buffer per pack left the garbage of the stored ones for the
	// collector, and the heap grew to about twice the packs in flight.
	free chan []byte
}

func (r *Remote) newUploader(ctx context.Context, cache *blockCache, st *ReplicateStats, workers int) (*uploader, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	u := &uploader{r: r, workers: workers, cache: cache, st: st, ch: make(chan *pack, 1), cancel: cancel,
		budget: make(chan struct{}, uploadBudget/budgetUnit), free: make(chan []byte, workers+1)}
	for range workers {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			for p := range u.ch {
				if err := u.store(ctx, p); err != nil {
					u.fail(err)
				}
			}
		}()
	}
	return u, ctx
}

func (u *uploader) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
	u.cancel()
}

func (u *uploader) firstErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// uploadBudget bounds the bytes of packs handed to the uploader (queued
// or being uploaded): three full packs. Four workers upload four small
// packs (an incremental's) at once, but full packs as two workers did
// (two uploading, one queued), so memory stays where it was.
const (
	uploadBudget = 3 * (DefaultPackSize + budgetUnit)
	budgetUnit   = 1 << 20
)

// acquire takes the budget for n bytes (at most the whole budget); the
// caller returns it with release.
func (u *uploader) acquire(ctx context.Context, n int) (int, error) {
	k := min(cap(u.budget), max(1, (n+budgetUnit-1)/budgetUnit))
	u.budgetMu.Lock() // one taker at a time: two partial takers cannot block each other
	defer u.budgetMu.Unlock()
	for i := 0; i < k; i++ {
		select {
		case u.budget <- struct{}{}:
		case <-ctx.Done():
			u.release(i)
			return 0, ctx.Err()
		}
	}
	return k, nil
}

func (u *uploader) release(k int) {
	for range k {
		<-u.budget
	}
}

func (u *uploader) store(ctx context.Context, p *pack) error {
	defer u.release(p.tokens)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	until := retainUntil(u.r.opts.ImmutableDays)
	v, err := u.r.st.put(ctx, packPrefix+p.id.String(), p.data, putOptions{retainUntil: until})
	if err != nil {
		return err
	}
	pi := &packIndex{Pack: p.id, Version: v, Entries: p.entries}
	sealed := u.r.sealIndex(pi)
	if _, err := u.r.st.put(ctx, indexPrefix+p.id.String(), sealed, putOptions{retainUntil: until}); err != nil {
		return err
	}
	if err := u.cache.writeLocal(pi); err != nil {
		return err
	}
	u.cache.add(pi)
	u.up.Add(int64(len(p.data) + len(sealed)))
	// The store answered after reading the whole body (it checks the
	// payload hash), so the buffer is free.
	select {
	case u.free <- p.data[:0]:
	default:
	}
	p.data = nil
	if u.r.afterPack != nil {
		u.r.afterPack(u.stored.Add(1))
	}
	return nil
}

// buffer returns an empty pack buffer of at least n bytes' capacity,
// a stored pack's when one is free.
func (u *uploader) buffer(n int) []byte {
	for {
		select {
		case b := <-u.free:
			if cap(b) >= n {
				return b
			}
		default:
			return make([]byte, 0, n)
		}
	}
}

// finish waits for every queued pack; it returns the first upload error.
func (u *uploader) finish() error {
	close(u.ch)
	u.wg.Wait()
	u.cancel()
	u.st.BytesUploaded += u.up.Load()
	return u.firstErr()
}

// pendingBlob is a blob of a pack not yet stored (by id: the pack's
// bytes are released once it is stored).
type pendingBlob struct {
	pack ID
	off  uint32
	len  uint32
	raw  uint32
}

func (r *Remote) replicatePoint(ctx context.Context, repo *blockmap.Repo, p blockmap.Point, cache *blockCache, st *ReplicateStats, cacheDir string, present map[string]bool, known *knownManifests, pre *preopened) error {
	start := time.Now()
	prev := r.loadPrev(ctx, cacheDir, p, present, known)
	r.log.Debug("replicate: earlier copied point loaded", "vm", p.VM, "point", p.ID, "found", prev != nil, "took", time.Since(start))
	start = time.Now()
	runs := map[string][]genRun{}
	up, uctx := r.newUploader(ctx, cache, st, r.uploadWorkers())
	var bt buildTimes
	m, entries, seeded, err := r.buildManifest(uctx, repo, p, cache, st, up, prev, runs, &bt, pre)
	built := time.Since(start)
	if ferr := up.finish(); err == nil || errors.Is(err, context.Canceled) && ferr != nil {
		err = ferr
	}
	r.log.Debug("replicate: blocks read and packs stored", "vm", p.VM, "point", p.ID, "read", built, "took", time.Since(start),
		"open_disks", bt.open, "wait_reads", bt.wait, "hash_seal_pack", bt.work)
	start = time.Now()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Every pack is stored: resolve the manifest's pack versions (the
	// map's pack table, seeded, has them), store the block map when the
	// point needs a new one, and write the manifest last.
	for i := range m.Packs {
		if i < seeded {
			continue
		}
		id, _ := parseID(m.Packs[i].ID)
		v, ok := cache.version(id)
		if !ok {
			return fmt.Errorf("internal error: pack %s not recorded after upload", id)
		}
		m.Packs[i].Version = v
	}
	rm, err := r.attachMaps(ctx, m, p, entries, prev, st)
	if err != nil {
		return err
	}
	if r.beforeManifest != nil {
		r.beforeManifest(m)
	}
	name := r.keys.manifestName(p.VM, p.ID)
	data, err := r.sealManifest(name, m)
	if err != nil {
		return err
	}
	if _, err := r.st.put(ctx, pointsPrefix+name, data, putOptions{retainUntil: retainUntil(r.opts.ImmutableDays)}); err != nil {
		return err
	}
	st.BytesUploaded += int64(len(data))
	st.ManifestBytes += int64(len(data))
	present[name] = true
	known.put(name, m, rm) // the VM's next point in this run starts from it
	if err := r.saveState(cacheDir, p, runs); err != nil {
		r.log.Warn("cannot record the copied point's block versions; the next replication of the VM reads every block", "err", err)
	}
	r.log.Debug("replicate: manifest stored", "vm", p.VM, "point", p.ID, "bytes", len(data), "took", time.Since(start))
	return nil
}

// block is one block on its way from the local reader to a pack.
type block struct {
	n      int64
	data   []byte
	id     ID
	sealed []byte
	ref    blobRef
}

const batchBlocks = 64

// sealedPool holds the buffers blocks are sealed into before they join a pack.
var sealedPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10+128); return &b }}

// buildTimes split buildManifest's time (debug log).
type buildTimes struct {
	open time.Duration // opening the local disks
	wait time.Duration // waiting for blocks read from them
	work time.Duration // hashing, sealing, packing (and waiting for the upload budget)
}

// buildManifest reads and stores the point's new blocks and returns its
// manifest (without block maps: see attachMaps) and each disk's map (in
// p.Disks order). When the earlier point has a map object, the manifest's
// packs start with that map's pack table (seeded of them, versions known)
// so that the point can be written as a delta on it.
func (r *Remote) buildManifest(ctx context.Context, repo *blockmap.Repo, p blockmap.Point, cache *blockCache, st *ReplicateStats, up *uploader, prev *prevPoint, runsOut map[string][]genRun, bt *buildTimes, pre *preopened) (*manifest, [][]blockEntry, int, error) {
	bs := int64(repo.BlockSize())
	m := &manifest{Format: manifestFormatMap, Point: p, BlockSize: int(bs)}
	if err := readAttachments(ctx, repo, m); err != nil {
		return nil, nil, 0, err
	}
	packNum := map[ID]int{}
	seeded := 0
	if prev != nil && prev.maps != nil && prev.maps.ref != nil && !r.inlineMaps {
		seeded = prev.maps.ref.Packs
		m.Packs = append([]manifestPack(nil), prev.m.Packs[:seeded]...)
		for i, pk := range m.Packs {
			if id, err := parseID(pk.ID); err == nil {
				packNum[id] = i
			}
		}
	}
	var diskEntries [][]blockEntry
	pending := map[ID]pendingBlob{}
	var cur *pack
	flush := func() error {
		if cur == nil || len(cur.entries) == 0 {
			return nil
		}
		k, err := up.acquire(ctx, len(cur.data))
		if err != nil {
			return err
		}
		cur.tokens = k
		select {
		case up.ch <- cur:
		case <-ctx.Done():
			up.release(k)
			return ctx.Err()
		}
		st.Packs++
		cur = nil
		return nil
	}
	packIndexOf := func(id ID) int32 {
		n, ok := packNum[id]
		if !ok {
			n = len(m.Packs)
			packNum[id] = n
			m.Packs = append(m.Packs, manifestPack{ID: id.String()})
		}
		return int32(n) // a point refers to far fewer than 2^31 packs
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	for _, d := range p.Disks {
		opened := time.Now()
		dr, err := pre.open(ctx, repo, p, d.Name)
		if err != nil {
			return nil, nil, 0, err
		}
		bt.open += time.Since(opened)
		var runs []genRun
		dr.DataRuns(func(first, n int64, gen uint32) bool {
			runs = append(runs, genRun{first: first, n: n, gen: gen})
			return true
		})
		if runsOut != nil {
			runsOut[d.Name] = runs
		}
		// The blocks an earlier copied point holds at the same generation
		// are taken from its manifest (below, once the others are read);
		// the others are read.
		var toRead []genRun
		var nRead, nReused int64
		for _, ru := range runs {
			for b := ru.first; b < ru.end(); b++ {
				if _, _, ok := prev.reuse(d.Name, b, ru.gen, cache); ok {
					nReused++
					continue
				}
				nRead++
				if k := len(toRead) - 1; k >= 0 && toRead[k].end() == b {
					toRead[k].n++
				} else {
					toRead = append(toRead, genRun{first: b, n: 1})
				}
			}
		}
		st.BlocksUnchanged += nReused
		if nRead > 0 && int64(len(toRead))*4 > nRead {
			// Scattered blocks (an incremental): no readahead around them.
			dr.AdviseRandom()
		}
		target := r.packTarget(nRead, bs, up.workers)
		// process stores the new blocks of one batch read and records all
		// of them.
		var read []blockEntry
		process := func(rb *readBatch) error {
			defer func(t time.Time) { bt.work += time.Since(t) }(time.Now())
			blocks := rb.blocks
			// Hash in parallel, look up in order, seal new ones in parallel.
			parallel(blocks, workers, func(b *block) { b.id = r.keys.blockID(b.data) })
			var fresh []*block
			for _, b := range blocks {
				if ref, ok := cache.lookup(b.id); ok {
					b.ref = ref
				} else if _, ok := pending[b.id]; !ok {
					fresh = append(fresh, b)
					pending[b.id] = pendingBlob{}
				}
			}
			parallel(fresh, workers, func(b *block) {
				bp := sealedPool.Get().(*[]byte)
				b.sealed = r.sealBlob((*bp)[:0], b.id, b.data)
			})
			for _, b := range fresh {
				if cur == nil {
					cur = &pack{id: randomID(), data: up.buffer(target + int(bs) + 64)}
				}
				pb := pendingBlob{pack: cur.id, off: uint32(len(cur.data)), len: uint32(len(b.sealed)), raw: uint32(len(b.data))}
				cur.data = append(cur.data, b.sealed...)
				bp := b.sealed[:0]
				sealedPool.Put(&bp)
				cur.entries = append(cur.entries, indexEntry{ID: b.id, Off: pb.off, Len: pb.len, Raw: pb.raw})
				pending[b.id] = pb
				st.BlocksNew++
				st.RawNew += int64(len(b.data))
				st.PackBytes += int64(len(b.sealed))
				if len(cur.data) >= target {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			for _, b := range blocks {
				st.BlocksRead++
				ref := b.ref
				if ref.Len == 0 {
					pb := pending[b.id]
					ref = blobRef{Pack: pb.pack, Off: pb.off, Len: pb.len, Raw: pb.raw}
				}
				read = append(read, blockEntry{Block: b.n, Pack: packIndexOf(ref.Pack), Off: ref.Off, Len: ref.Len, Raw: ref.Raw, ID: b.id})
			}
			st.BytesRead += rb.bytes
			return nil
		}
		err = func() error {
			defer dr.Close()
			return r.readBatches(ctx, dr, d, bs, toRead, process, &bt.wait)
		}()
		if err != nil {
			return nil, nil, 0, err
		}
		// The map in block order: the blocks read and those taken from
		// the earlier point (the same answers as in the plan above: the
		// earlier point's packs are still in the cache).
		entries := read
		if nReused > 0 {
			entries = make([]blockEntry, 0, nReused+int64(len(read)))
			for _, ru := range runs {
				for b := ru.first; b < ru.end(); b++ {
					if len(read) > 0 && read[0].Block == b {
						entries, read = append(entries, read[0]), read[1:]
						continue
					}
					ref, id, ok := prev.reuse(d.Name, b, ru.gen, cache)
					if !ok {
						return nil, nil, 0, fmt.Errorf("internal error: block %d of disk %s neither read nor taken from the earlier point", b, d.Name)
					}
					entries = append(entries, blockEntry{Block: b, Pack: packIndexOf(ref.Pack), Off: ref.Off, Len: ref.Len, Raw: ref.Raw, ID: id})
				}
			}
		}
		diskEntries = append(diskEntries, entries)
	}
	if err := flush(); err != nil {
		return nil, nil, 0, err
	}
	return m, diskEntries, seeded, nil
}

// minPackSize is the smallest pack packTarget asks for.
const minPackSize = 8 << 20

// packTarget is the pack size for a disk's blocks, toRead of them to be
// read: the full pack size, unless the disk has less to upload than a
// full pack per upload worker (an incremental). Then its packs are cut
// smaller (never below minPackSize) so that they go up at once: one
// upload stream to a store is far slower than several (RGW on this
// machine: 10 MiB in one PUT at 12 MB/s while two PUTs at once moved 50
// MB/s), and the last pack of a point would otherwise go up alone after
// every block was read.
func (r *Remote) packTarget(toRead, bs int64, workers int) int {
	if toRead*bs >= int64(r.packSize)*int64(workers) {
		return r.packSize
	}
	return int(min(int64(r.packSize), max(minPackSize, toRead*bs/int64(workers))))
}

// parallel runs fn on every item with up to workers goroutines.
func parallel[T any](items []T, workers int, fn func(T)) {
	if len(items) < 2 || workers < 2 {
		for _, it := range items {
			fn(it)
		}
		return
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range min(workers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(items)) {
					return
				}
				fn(items[i])
			}
		}()
	}
	wg.Wait()
}

// uploadWorkers is the number of packs uploaded at once: four, within
// uploadBudget.
func (r *Remote) uploadWorkers() int {
	if r.uploads > 0 {
		return r.uploads
	}
	return 4
}

// checkObjectLock fails with ErrNoObjectLock when the remote writes with a
// retention (--immutable-days) into a bucket without Object Lock: every
// PUT would be refused (or, on some stores, kept without a lock), and a
// second run would fail the same way.
func (r *Remote) checkObjectLock(ctx context.Context) error {
	if r.opts.ImmutableDays <= 0 {
		return nil
	}
	on, err := r.st.objectLock(ctx)
	if err != nil {
		return err
	}
	if !on {
		return fmt.Errorf("bucket %s: %w", r.st.bucket, ErrNoObjectLock)
	}
	return nil
}

package remote

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/cairnbackup/cairn/blockmap"
)

// pointState is what the replicating machine remembers of a point it
// copied: which local generation held each data block, as runs (see
// blockmap.DiskReader.DataRuns), so its size follows the data, not the
// disks' capacity. A later point of the VM whose block has the same
// generation has the same bytes, so that block is not read again; its blob
// is taken from the earlier point's manifest. State files of the first
// format (one uint32 per block, field "disks") are ignored: the next
// replication of the VM then reads every block once.
//
// A point pulled from the remote is recorded the same way (see
// savePulledState): the remote holds it under another generation (the
// appliance's that copied it first), SourceGen, and block map, Map; a
// replicated point has neither (its remote generation is Gen).
type pointState struct {
	Gen       uint32            `json:"generation"`
	ID        string            `json:"id"`
	Runs      map[string][]byte `json:"runs"` // per disk: encodeRuns
	SourceGen uint32            `json:"source_generation,omitempty"`
	Map       string            `json:"map,omitempty"`
}

// remoteGen is the generation the remote manifest of the point names.
func (st *pointState) remoteGen() uint32 {
	if st.SourceGen != 0 {
		return st.SourceGen
	}
	return st.Gen
}

// matches reports whether remote manifest m is the one the state was
// recorded for.
func (st *pointState) matches(m *manifest) bool {
	if m.Point.Gen != st.remoteGen() || m.Point.ID != st.ID {
		return false
	}
	if st.Map != "" && (m.Map == nil || m.Map.ID != st.Map) {
		return false
	}
	return true
}

// genRun is blocks [first, first+n) held by local generation gen.
type genRun struct {
	first, n int64
	gen      uint32
}

func (g genRun) end() int64 { return g.first + g.n }

// encodeRuns writes sorted runs as uvarints: gap from the previous run's
// end, length, generation.
func encodeRuns(rs []genRun) []byte {
	var b []byte
	prev := int64(0)
	for _, r := range rs {
		b = binary.AppendUvarint(b, uint64(r.first-prev))
		b = binary.AppendUvarint(b, uint64(r.n))
		b = binary.AppendUvarint(b, uint64(r.gen))
		prev = r.end()
	}
	return b
}

func decodeRuns(b []byte) ([]genRun, error) {
	var out []genRun
	prev := int64(0)
	for len(b) > 0 {
		var v [3]uint64
		for i := range v {
			x, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, errShort
			}
			v[i], b = x, b[n:]
		}
		if v[0] > 1<<53 || v[1] == 0 || v[1] > 1<<53 || v[2] > 1<<32-1 {
			return nil, ErrFormat
		}
		r := genRun{first: prev + int64(v[0]), n: int64(v[1]), gen: uint32(v[2])}
		if r.end() > 1<<53 {
			return nil, ErrFormat
		}
		out = append(out, r)
		prev = r.end()
	}
	return out, nil
}

// findRun returns the run of sorted rs holding block b.
func findRun(rs []genRun, b int64) (genRun, bool) {
	k := sort.Search(len(rs), func(i int) bool { return rs[i].end() > b })
	if k == len(rs) || rs[k].first > b {
		return genRun{}, false
	}
	return rs[k], true
}

// findEntry returns the entry of block b in es (sorted by block).
func findEntry(es []blockEntry, b int64) (blockEntry, bool) {
	k := sort.Search(len(es), func(i int) bool { return es[i].Block >= b })
	if k == len(es) || es[k].Block != b {
		return blockEntry{}, false
	}
	return es[k], true
}

func (r *Remote) stateDir(cacheDir, vm string) string {
	return filepath.Join(cacheDir, "points", r.keys.manifestName(vm, ""))
}

func (r *Remote) saveState(cacheDir string, p blockmap.Point, runs map[string][]genRun) error {
	return r.writeState(cacheDir, p, runs, pointState{})
}

// writeState records point p with runs; from carries SourceGen and Map.
func (r *Remote) writeState(cacheDir string, p blockmap.Point, runs map[string][]genRun, from pointState) error {
	dir := r.stateDir(cacheDir, p.VM)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st := pointState{Gen: p.Gen, ID: p.ID, Runs: map[string][]byte{}, SourceGen: from.SourceGen, Map: from.Map}
	for d, rs := range runs {
		st.Runs[d] = encodeRuns(rs)
	}
	return writeGenFile(dir, p.Gen, st)
}

// writeGenFile writes v as JSON to dir/<gen> (mode 0600), whole or not at
// all (a temporary file renamed over it).
func writeGenFile(dir string, gen uint32, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, strconv.FormatUint(uint64(gen), 10))
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// prevPoint is an earlier copied point of the same VM, with its manifest.
type prevPoint struct {
	runs map[string][]genRun
	m    *manifest
	// maps are its block maps (the full map and its delta)
	maps *replMaps
}

// loadPrev finds the newest point of p's VM older than p that this
// machine copied and the remote still has. Nothing found is not an error:
// then every block is read.
func (r *Remote) loadPrev(ctx context.Context, cacheDir string, p blockmap.Point, present map[string]bool, known *knownManifests) *prevPoint {
	for _, st := range r.prevStates(cacheDir, p) {
		name := r.keys.manifestName(p.VM, st.ID)
		if !present[name] {
			continue
		}
		m, rm, err := known.get(name)
		if m == nil && err == nil {
			m, err = r.readManifest(ctx, name)
		}
		if err != nil || !st.matches(m) {
			continue
		}
		if rm == nil {
			rm = r.loadReplMaps(ctx, m)
		}
		pp := &prevPoint{runs: map[string][]genRun{}, m: m, maps: rm}
		ok := rm != nil
		for d, b := range st.Runs {
			rs, err := decodeRuns(b)
			if err != nil {
				ok = false
				break
			}
			pp.runs[d] = rs
		}
		if ok {
			r.log.Debug("replicating changes since an earlier copied point", "vm", p.VM, "point", p.ID, "since", st.ID)
			return pp
		}
	}
	return nil
}

// prevStates returns what this machine recorded of the points of p's VM
// older than p, newest first.
func (r *Remote) prevStates(cacheDir string, p blockmap.Point) []pointState {
	dir := r.stateDir(cacheDir, p.VM)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var gens []uint64
	for _, e := range ents {
		if g, err := strconv.ParseUint(e.Name(), 10, 32); err == nil && uint32(g) < p.Gen {
			gens = append(gens, g)
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] > gens[j] })
	var out []pointState
	for _, g := range gens {
		data, err := os.ReadFile(filepath.Join(dir, strconv.FormatUint(g, 10)))
		if err != nil {
			continue
		}
		var st pointState
		if json.Unmarshal(data, &st) != nil || st.Runs == nil {
			continue
		}
		out = append(out, st)
	}
	return out
}

// knownManifests holds manifests read ahead of their use: the earlier
// copied point of each VM, fetched while the block cache is brought in
// step, and each point this run stored (the VM's next point starts from
// it). A manifest is used only when the remote lists its name.
type knownManifests struct {
	mu   sync.Mutex
	wait map[string]chan struct{}
	m    map[string]*manifest
	err  map[string]error
	// maps are the manifests' block maps, decoded while the remote is
	// listed (nil when a map does not decode).
	maps map[string]*replMaps
}

// put records the manifest just stored under name; it replaces the
// VM's others (only the newest is a VM's next starting point).
func (k *knownManifests) put(name string, m *manifest, rm *replMaps) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for n, o := range k.m {
		if o != nil && o.Point.VM == m.Point.VM {
			delete(k.m, n)
			delete(k.maps, n)
		}
	}
	k.m[name] = m
	k.maps[name] = rm
}

// get waits for a prefetch of name; (nil, nil) when there was none. The
// block maps are returned when they were decoded ahead.
func (k *knownManifests) get(name string) (*manifest, *replMaps, error) {
	k.mu.Lock()
	ch := k.wait[name]
	k.mu.Unlock()
	if ch != nil {
		<-ch
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[name], k.maps[name], k.err[name]
}

// prefetchPrev starts reading, for the oldest of pts of each VM, the
// manifest of the newest earlier point this machine copied.
func (r *Remote) prefetchPrev(ctx context.Context, cacheDir string, pts []blockmap.Point) *knownManifests {
	k := &knownManifests{wait: map[string]chan struct{}{}, m: map[string]*manifest{}, err: map[string]error{}, maps: map[string]*replMaps{}}
	seen := map[string]bool{}
	for _, p := range pts { // oldest first
		if seen[p.VM] {
			continue
		}
		seen[p.VM] = true
		sts := r.prevStates(cacheDir, p)
		if len(sts) == 0 {
			continue
		}
		name := r.keys.manifestName(p.VM, sts[0].ID)
		ch := make(chan struct{})
		k.wait[name] = ch
		go func() {
			defer close(ch)
			m, err := r.readManifest(ctx, name)
			var rm *replMaps
			if err == nil {
				rm = r.loadReplMaps(ctx, m)
			}
			k.mu.Lock()
			k.m[name], k.err[name], k.maps[name] = m, err, rm
			k.mu.Unlock()
		}()
	}
	return k
}

// reuse returns the blob of block b of disk when the earlier point holds
// the same generation of it and its pack is still on the remote.
func (pp *prevPoint) reuse(disk string, b int64, gen uint32, cache *blockCache) (blobRef, ID, bool) {
	if pp == nil || gen == 0 {
		return blobRef{}, ID{}, false
	}
	if r, ok := findRun(pp.runs[disk], b); !ok || r.gen != gen {
		return blobRef{}, ID{}, false
	}
	e, ok := pp.maps.lookup(disk, b)
	if !ok {
		return blobRef{}, ID{}, false
	}
	pk, err := parseID(pp.m.Packs[e.Pack].ID)
	if err != nil {
		return blobRef{}, ID{}, false
	}
	if v, ok := cache.version(pk); !ok || v != pp.m.Packs[e.Pack].Version {
		return blobRef{}, ID{}, false
	}
	return blobRef{Pack: pk, Off: e.Off, Len: e.Len, Raw: e.Raw}, e.ID, true
}

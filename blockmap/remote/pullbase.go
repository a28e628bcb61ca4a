package remote

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/cairnbackup/cairn/blockmap"
)

// A pull downloads only what the local repository lacks. The point a pull
// writes builds on the VM's newest local point (the session's base); when
// that point is known to hold exactly the bytes of a remote point — this
// repository pulled it from the remote (a pull record) or replicated it
// there (a replicate state file) — the two remote block maps say which
// blocks differ: a block whose id (the keyed MAC of its bytes) is the same
// in both is already in the repository and is neither downloaded nor
// written, a block the base holds elsewhere under the same id is copied
// from the local disk, and only the rest is fetched (ranged GETs, see
// fetchBlobs). Without such a base (the first pull of a VM, no CacheDir,
// the base's remote copy forgotten) every block is downloaded, as before.

// pullRecord is what a pull remembers of a point it wrote, under
// <CacheDir>/pulled/<VM's manifest name>/<local generation>: the point's
// id and the remote manifest it came from (the source generation and map
// the manifest names; a manifest is never rewritten, so a manifest with
// these is the one the point was pulled from).
type pullRecord struct {
	Gen       uint32 `json:"generation"`
	ID        string `json:"id"`
	SourceGen uint32 `json:"source_generation"`
	Map       string `json:"map,omitempty"`
}

func (r *Remote) pulledDir(cacheDir, vm string) string {
	return filepath.Join(cacheDir, "pulled", r.keys.manifestName(vm, ""))
}

func (r *Remote) savePullRecord(cacheDir string, p blockmap.Point, m *manifest) (pullRecord, error) {
	rec := pullRecord{Gen: p.Gen, ID: p.ID, SourceGen: m.Point.Gen}
	if m.Map != nil {
		rec.Map = m.Map.ID
	}
	dir := r.pulledDir(cacheDir, p.VM)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return rec, err
	}
	return rec, writeGenFile(dir, p.Gen, rec)
}

// pullBase is the local point a pull builds on with its remote twin.
type pullBase struct {
	// incremental: p is the session's base (the writer keeps its blocks).
	incremental bool
	repo        *blockmap.Repo
	p           blockmap.Point
	m           *manifest
	maps        *pointMaps
}

// maxTwinTries bounds the local points whose remote copies a pull reads
// (one manifest GET each) to find a twin.
const maxTwinTries = 3

// findPullBase returns the local point a pull of m takes blocks from:
// the session's base (the VM's newest local point) when it has a proven
// remote twin — then the writer keeps its blocks and only the blocks that
// differ are written — or else the newest other point of the VM that has
// one (then the writer takes every block and the equal ones are read
// from that point's local disk instead of downloaded). nil when none.
func (r *Remote) findPullBase(ctx context.Context, repo *blockmap.Repo, cacheDir string, s *blockmap.Session, m *manifest, pm *pointMaps) *pullBase {
	if cacheDir == "" {
		return nil
	}
	var cands []blockmap.Point
	sb, hasBase := s.Base()
	if hasBase {
		cands = append(cands, sb)
	}
	if local, err := repo.Points(ctx, s.VM()); err == nil {
		sort.Slice(local, func(i, j int) bool { return local[i].Gen > local[j].Gen })
		for _, p := range local {
			if (!hasBase || p.Gen != sb.Gen) && r.recorded(cacheDir, p) {
				cands = append(cands, p)
			}
		}
	}
	tries := 0
	for _, p := range cands {
		if !r.recorded(cacheDir, p) {
			continue
		}
		if tries++; tries > maxTwinTries {
			break
		}
		if pb := r.loadPullBase(ctx, repo, cacheDir, p, m, pm); pb != nil {
			pb.incremental = hasBase && p.Gen == sb.Gen
			return pb
		}
	}
	return nil
}

// recorded reports whether this machine holds a pull record or a
// replicate state of local point b.
func (r *Remote) recorded(cacheDir string, b blockmap.Point) bool {
	gen := strconv.FormatUint(uint64(b.Gen), 10)
	for _, f := range []string{filepath.Join(r.pulledDir(cacheDir, b.VM), gen), filepath.Join(r.stateDir(cacheDir, b.VM), gen)} {
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return false
}

// loadPullBase returns b's remote twin when this repository's records
// prove that local point b holds the bytes of the remote point of the same
// VM and id; nil otherwise. pm are the maps of the point being pulled: a
// base sharing its map object reuses it.
func (r *Remote) loadPullBase(ctx context.Context, repo *blockmap.Repo, cacheDir string, b blockmap.Point, m *manifest, pm *pointMaps) *pullBase {
	gen := strconv.FormatUint(uint64(b.Gen), 10)
	src, mapID, pulled := uint32(0), "", false
	if data, err := os.ReadFile(filepath.Join(r.pulledDir(cacheDir, b.VM), gen)); err == nil {
		var rec pullRecord
		if json.Unmarshal(data, &rec) == nil && rec.Gen == b.Gen && rec.ID == b.ID {
			src, mapID, pulled = rec.SourceGen, rec.Map, true
		}
	}
	if !pulled {
		// Replicated from here: the manifest records this generation.
		data, err := os.ReadFile(filepath.Join(r.stateDir(cacheDir, b.VM), gen))
		if err != nil {
			return nil
		}
		var st pointState
		if json.Unmarshal(data, &st) != nil || st.Gen != b.Gen || st.ID != b.ID {
			return nil
		}
		src = st.remoteGen()
		if st.Map != "" {
			mapID, pulled = st.Map, true // a pulled point's state: its map is known too
		}
	}
	bm, err := r.manifest(ctx, b.VM, b.ID)
	if err != nil {
		r.log.Debug("pull: the base point's remote copy is not usable; every block is downloaded", "vm", b.VM, "base", b.ID, "error", err)
		return nil
	}
	if bm.Point.Gen != src || bm.Point.ID != b.ID || bm.BlockSize != m.BlockSize || !bm.Point.Time.Equal(b.Time) ||
		(pulled && (bm.Map == nil) != (mapID == "")) || (pulled && bm.Map != nil && bm.Map.ID != mapID) ||
		len(bm.Point.Disks) != len(b.Disks) {
		return nil
	}
	for i, d := range b.Disks {
		if bm.Point.Disks[i].Name != d.Name || bm.Point.Disks[i].Size != d.Size {
			return nil
		}
	}
	var bmaps *pointMaps
	if bm.Map != nil && m.Map != nil && *bm.Map == *m.Map && pm.disks != nil {
		bmaps = &pointMaps{m: bm, disks: pm.disks}
	} else if bmaps, err = r.openMaps(ctx, bm); err != nil {
		return nil
	}
	return &pullBase{repo: repo, p: b, m: bm, maps: bmaps}
}

// entries returns the base's remote map of disk (sorted by block), or
// nil when the base has no such disk.
func (pb *pullBase) entries(disk string) []blockEntry {
	if pb == nil {
		return nil
	}
	for i := range pb.m.Disks {
		if pb.m.Disks[i].Name == disk {
			es, err := pb.maps.entries(&pb.m.Disks[i])
			if err != nil {
				return nil
			}
			sortEntries(es)
			return es
		}
	}
	return nil
}

func sortEntries(es []blockEntry) {
	if !sort.SliceIsSorted(es, func(i, j int) bool { return es[i].Block < es[j].Block }) {
		sort.Slice(es, func(i, j int) bool { return es[i].Block < es[j].Block })
	}
}

// pullPlan is how one disk of a pulled point is filled.
type pullPlan struct {
	fetch  []blockEntry // downloaded
	copies [][2]int64   // [dst, src] blocks read from the base's local disk
	copyE  []blockEntry // the entry of each copy (its length and id)
	zero   []int64      // blocks the base holds and the point does not
	kept   int64        // plaintext bytes already in place (not written)
	keptN  int          // blocks already in place
}

// planDisk splits es (the point's map of a disk) against base (the
// base's map of it, sorted). incremental: the writer keeps the base's
// blocks, so blocks equal to the base's are left alone and blocks the base
// holds but the point does not are zeroed; otherwise (a full writer) equal
// blocks are copied from the local disk.
func planDisk(es, base []blockEntry, incremental bool) pullPlan {
	var pl pullPlan
	if len(base) == 0 {
		pl.fetch = es
		return pl
	}
	sortEntries(es)
	j := 0
	for _, e := range es {
		for j < len(base) && base[j].Block < e.Block {
			if incremental {
				pl.zero = append(pl.zero, base[j].Block)
			}
			j++
		}
		if j < len(base) && base[j].Block == e.Block {
			be := base[j]
			j++
			if be.ID == e.ID && be.Raw == e.Raw {
				if incremental {
					pl.kept += int64(e.Raw)
					pl.keptN++
				} else {
					pl.copies = append(pl.copies, [2]int64{e.Block, e.Block})
					pl.copyE = append(pl.copyE, e)
				}
				continue
			}
		}
		pl.fetch = append(pl.fetch, e)
	}
	if incremental {
		for ; j < len(base); j++ {
			pl.zero = append(pl.zero, base[j].Block)
		}
	}
	// A block the base holds at another offset (moved, or equal blocks)
	// is copied from the local disk instead of downloaded.
	if len(pl.fetch) > 0 {
		want := make(map[ID]int64, len(pl.fetch))
		for _, e := range pl.fetch {
			want[e.ID] = -1
		}
		for _, be := range base {
			if src, ok := want[be.ID]; ok && src < 0 {
				want[be.ID] = be.Block
			}
		}
		rest := pl.fetch[:0:0]
		for _, e := range pl.fetch {
			if src := want[e.ID]; src >= 0 {
				pl.copies = append(pl.copies, [2]int64{e.Block, src})
				pl.copyE = append(pl.copyE, e)
				continue
			}
			rest = append(rest, e)
		}
		pl.fetch = rest
	}
	return pl
}

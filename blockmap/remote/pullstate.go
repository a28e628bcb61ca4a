package remote

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cairnbackup/cairn/blockmap"
)

// A point pulled from a remote is, for that remote, a point this machine
// replicated: the pull wrote it byte for byte from the remote manifest
// (every block authenticated before the commit), so its blocks at their
// local generations are the blobs that manifest's block map names. The
// pull therefore records it as replicate would have (a replicate state,
// pointState, with the manifest's generation and map), and the next
// point of the VM replicated to that remote reads only the blocks whose
// generation changed since, as after an ordinary replication; the others'
// blobs are taken from the pulled point's map once loadPrev has checked
// that the remote still lists that manifest, that it is the one pulled
// (generation, id, map) and that their packs are still there (the block
// cache, rebuilt from the remote's pack indexes on every run). A state
// lives in the remote's own cache directory: a point pulled from another
// remote proves nothing about this one.

// savePulledState records p, just pulled from manifest rec names, as
// copied to this remote (its data runs by local generation).
func (r *Remote) savePulledState(ctx context.Context, repo *blockmap.Repo, cacheDir string, p blockmap.Point, rec pullRecord) error {
	runs := map[string][]genRun{}
	for _, d := range p.Disks {
		dr, err := repo.OpenDisk(ctx, p, d.Name)
		if err != nil {
			return err
		}
		var rs []genRun
		dr.DataRuns(func(first, n int64, gen uint32) bool {
			rs = append(rs, genRun{first: first, n: n, gen: gen})
			return true
		})
		dr.Close()
		runs[d.Name] = rs
	}
	return r.writeState(cacheDir, p, runs, pointState{SourceGen: rec.SourceGen, Map: rec.Map})
}

// adoptPulled writes the replicate state of the points of pts' VMs that
// a pull recorded but that have none (pulled by a cairn that did not
// record one): each is a few index reads of the local point, done once.
func (r *Remote) adoptPulled(ctx context.Context, repo *blockmap.Repo, cacheDir string, pts []blockmap.Point) {
	seen := map[string]bool{}
	for _, p := range pts {
		if seen[p.VM] {
			continue
		}
		seen[p.VM] = true
		dir := r.pulledDir(cacheDir, p.VM)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		var local map[uint32]blockmap.Point
		for _, e := range ents {
			g, err := strconv.ParseUint(e.Name(), 10, 32)
			if err != nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(r.stateDir(cacheDir, p.VM), e.Name())); err == nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			var rec pullRecord
			if json.Unmarshal(data, &rec) != nil || uint64(rec.Gen) != g {
				continue
			}
			if local == nil {
				local = map[uint32]blockmap.Point{}
				pts, err := repo.Points(ctx, p.VM)
				if err != nil {
					break
				}
				for _, lp := range pts {
					local[lp.Gen] = lp
				}
			}
			lp, ok := local[rec.Gen]
			if !ok || lp.ID != rec.ID {
				continue // pulled, then forgotten or pruned here
			}
			if err := r.savePulledState(ctx, repo, cacheDir, lp, rec); err != nil {
				r.log.Warn("replicate: cannot record a pulled point as copied; the VM's next point is read whole", "vm", lp.VM, "point", lp.ID, "error", err)
			}
		}
	}
}

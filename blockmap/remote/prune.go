package remote

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// LockedPoint is a point that cannot be deleted yet: its manifest is under
// Object Lock retention until Until.
type LockedPoint struct {
	blockmap.Point
	Until time.Time `json:"until"`
}

// PruneReport says what Prune or Forget removed (or would remove).
type PruneReport struct {
	DryRun  bool             `json:"dry_run"`
	Kept    []blockmap.Point `json:"kept"`
	Deleted []blockmap.Point `json:"deleted"`
	// Locked points were selected but are still under retention.
	Locked []LockedPoint `json:"locked,omitempty"`
	// Protected are the points the policy would have deleted that
	// PruneWith's guard kept, with its reason (a VM's last clean point
	// while it has suspicious ones: backupd/anomaly.Guard).
	Protected []blockmap.ProtectedPoint `json:"protected,omitempty"`
	// PacksDeleted were referenced by no point any more; PacksLocked
	// were unreferenced but still under retention (a later prune
	// deletes them); Orphans are packs an interrupted replication left
	// without an index.
	// MapsDeleted are block map objects no remaining point refers to;
	// MapsLocked such maps still under retention. An unreferenced map
	// younger than a day is left alone: a running replication may be
	// about to refer to it.
	MapsDeleted  int   `json:"maps_deleted"`
	MapsLocked   int   `json:"maps_locked"`
	PacksDeleted int   `json:"packs_deleted"`
	PacksLocked  int   `json:"packs_locked"`
	Orphans      int   `json:"orphans_deleted"`
	BytesFreed   int64 `json:"bytes_freed"`
	// ConfigsDeleted are old versions of the config (wrapped with a key
	// replaced by cairn remote rekey) deleted once their retention passed.
	ConfigsDeleted int `json:"old_configs_deleted,omitempty"`
}

// orphanAge is how old a pack without an index must be before prune
// deletes it: younger ones may belong to a replication still running on
// another machine.
const orphanAge = 24 * time.Hour

// Prune applies pol to the remote points of vm (every VM when vm is "")
// and then deletes the packs no point references any more. Nothing under
// Object Lock retention is deleted: such points are reported as Locked and
// their objects stay until a later prune after the date.
func (r *Remote) Prune(ctx context.Context, vm string, pol blockmap.Policy, dryRun bool) (*PruneReport, error) {
	return r.PruneWith(ctx, vm, pol, dryRun, nil)
}

// PruneWith is Prune that also keeps the points guard names (nil: none),
// listed with its reasons in PruneReport.Protected. The guard sees each
// VM's remote points as their manifests hold them (with the verdict the
// replicating repository kept: blockmap.Point.Verdict), numbered by time
// (the generations of a remote's points come from whichever repository
// replicated them), and names the points to keep by that number.
func (r *Remote) PruneWith(ctx context.Context, vm string, pol blockmap.Policy, dryRun bool, guard blockmap.PruneGuard) (*PruneReport, error) {
	pts, _, err := r.Points(ctx)
	if err != nil {
		return nil, err
	}
	byVM := map[string][]blockmap.Point{}
	for _, p := range pts {
		if vm == "" || p.VM == vm {
			byVM[p.VM] = append(byVM[p.VM], p)
		}
	}
	if vm != "" && len(byVM) == 0 {
		return nil, fmt.Errorf("VM %q: %w: the remote has no points of it", vm, blockmap.ErrNotFound)
	}
	var del, kept []blockmap.Point
	var protected []blockmap.ProtectedPoint
	for name, vp := range byVM {
		// Generations come from whichever repository replicated a point
		// (a repository rebuilt by pull numbers its own), so the policy
		// sees the points numbered in time order instead.
		sort.SliceStable(vp, func(i, j int) bool { return vp[i].Time.Before(vp[j].Time) })
		byTime := make([]blockmap.Point, len(vp))
		for i, p := range vp {
			byTime[i] = p
			byTime[i].Gen = uint32(i + 1)
		}
		keep := pol.Keep(byTime)
		var guarded map[uint32]string
		if guard != nil {
			guarded = guard(name, byTime)
		}
		for i, p := range vp {
			if why, ok := guarded[byTime[i].Gen]; ok && !keep[byTime[i].Gen] {
				kept = append(kept, p)
				protected = append(protected, blockmap.ProtectedPoint{VM: p.VM, Point: p.ID, Reason: why})
				continue
			}
			if keep[byTime[i].Gen] {
				kept = append(kept, p)
			} else {
				del = append(del, p)
			}
		}
	}
	rep, err := r.Forget(ctx, del, dryRun)
	if rep != nil {
		rep.Kept = kept
		rep.Protected = protected
	}
	return rep, err
}

// Forget deletes the manifests of the given remote points (those whose
// retention has passed) and then every pack no remaining point references
// and no retention protects.
func (r *Remote) Forget(ctx context.Context, pts []blockmap.Point, dryRun bool) (*PruneReport, error) {
	rep := &PruneReport{DryRun: dryRun}
	now := time.Now()
	if !dryRun {
		if err := r.checkWriter(ctx, "prune"); err != nil {
			return nil, err
		}
	}
	lockOn, err := r.st.objectLock(ctx)
	if err != nil {
		return nil, err
	}
	r.lockOn = lockOn
	for _, p := range pts {
		name := pointsPrefix + r.keys.manifestName(p.VM, p.ID)
		vs, err := r.st.allVersions(ctx, name)
		if err != nil {
			return rep, err
		}
		var lockedUntil time.Time
		for _, v := range vs {
			if v.marker {
				continue
			}
			until, err := r.retention(ctx, name, v.id)
			if err != nil {
				return rep, err
			}
			if until.After(now) && until.After(lockedUntil) {
				lockedUntil = until
			}
		}
		if !lockedUntil.IsZero() {
			rep.Locked = append(rep.Locked, LockedPoint{Point: p, Until: lockedUntil})
			continue
		}
		if !dryRun {
			for _, v := range vs {
				if err := r.st.remove(ctx, name, v.id); err != nil {
					return rep, err
				}
			}
		}
		rep.Deleted = append(rep.Deleted, p)
	}
	if err := r.collect(ctx, rep, dryRun); err != nil || dryRun {
		return rep, err
	}
	// Versions of the config a rekey left behind, once their retention passed.
	n, _, err := r.dropOldConfigs(ctx)
	rep.ConfigsDeleted = n
	return rep, err
}

// collect deletes packs (and their indexes) that no manifest references.
func (r *Remote) collect(ctx context.Context, rep *PruneReport, dryRun bool) error {
	ms, bad, err := r.manifests(ctx)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		// A manifest cairn cannot read may reference any pack.
		return fmt.Errorf("prune: %d manifests cannot be read (first %s: %s): no pack is deleted while they exist", len(bad), bad[0].Object, bad[0].Err)
	}
	deleted := map[string]bool{}
	for _, p := range rep.Deleted {
		deleted[p.VM+"\x00"+p.ID] = true
	}
	used := map[string]bool{}
	usedMaps := map[string]bool{}
	for _, m := range ms {
		if dryRun && deleted[m.Point.VM+"\x00"+m.Point.ID] {
			continue
		}
		for _, p := range m.Packs {
			used[p.ID] = true
		}
		if m.Map != nil {
			usedMaps[m.Map.ID] = true
		}
	}
	if err := r.collectMaps(ctx, rep, usedMaps, dryRun); err != nil {
		return err
	}
	packs, err := r.st.list(ctx, packPrefix, true)
	if err != nil {
		return err
	}
	idxs, err := r.st.list(ctx, indexPrefix, true)
	if err != nil {
		return err
	}
	hasIndex := map[string]bool{}
	for _, o := range idxs {
		hasIndex[strings.TrimPrefix(o.Name, indexPrefix)] = true
	}
	now := time.Now()
	for _, o := range packs {
		id := strings.TrimPrefix(o.Name, packPrefix)
		if used[id] {
			continue
		}
		orphan := !hasIndex[id]
		if orphan && now.Sub(o.Modified) < orphanAge {
			continue
		}
		names := []string{o.Name}
		if !orphan {
			names = append([]string{indexPrefix + id}, names...) // the index first: a pack is never listed without its blobs
		}
		var vers [][]objectVersion
		locked := false
		var size int64
		for _, n := range names {
			vs, err := r.st.allVersions(ctx, n)
			if err != nil {
				return err
			}
			for _, v := range vs {
				if v.marker {
					continue
				}
				until, err := r.retention(ctx, n, v.id)
				if err != nil {
					return err
				}
				if until.After(now) {
					locked = true
				}
				size += v.size
			}
			vers = append(vers, vs)
		}
		if locked {
			rep.PacksLocked++
			continue
		}
		if !dryRun {
			for i, n := range names {
				for _, v := range vers[i] {
					if err := r.st.remove(ctx, n, v.id); err != nil {
						return err
					}
				}
			}
		}
		if orphan {
			rep.Orphans++
		} else {
			rep.PacksDeleted++
		}
		rep.BytesFreed += size
	}
	return nil
}

// retention is an object version's retain-until date; zero on a bucket
// without Object Lock.
func (r *Remote) retention(ctx context.Context, name, version string) (time.Time, error) {
	if !r.lockOn {
		return time.Time{}, nil
	}
	return r.st.retention(ctx, name, version)
}

// collectMaps deletes the block map objects (every version) that no
// remaining manifest refers to, once they are older than the grace period
// (a replication writes its map before the manifest that refers to it)
// and no retention protects them.
func (r *Remote) collectMaps(ctx context.Context, rep *PruneReport, used map[string]bool, dryRun bool) error {
	maps, err := r.st.list(ctx, mapsPrefix, true)
	if err != nil {
		return err
	}
	grace := r.mapGrace
	if grace <= 0 {
		grace = orphanAge
	}
	now := time.Now()
	for _, o := range maps {
		if used[strings.TrimPrefix(o.Name, mapsPrefix)] || now.Sub(o.Modified) < grace {
			continue
		}
		vs, err := r.st.allVersions(ctx, o.Name)
		if err != nil {
			return err
		}
		locked := false
		var size int64
		for _, v := range vs {
			if v.marker {
				continue
			}
			until, err := r.retention(ctx, o.Name, v.id)
			if err != nil {
				return err
			}
			if until.After(now) {
				locked = true
			}
			size += v.size
		}
		if locked {
			rep.MapsLocked++
			continue
		}
		if !dryRun {
			for _, v := range vs {
				if err := r.st.remove(ctx, o.Name, v.id); err != nil {
					return err
				}
			}
		}
		rep.MapsDeleted++
		rep.BytesFreed += size
	}
	return nil
}

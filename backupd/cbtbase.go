package backupd

import (
	"context"
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// cbtBase is the point a backup asks CBT since: the VM's newest point by
// time (blockmap.Latest, as latest and retention go). It is the session's
// base (the highest generation) unless points came in out of time order
// (a pull of the newest point first, then the history): then the newest
// point is an older generation, and planCBTDisk adds the areas where the
// base differs from it.
func cbtBase(ctx context.Context, repo *blockmap.Repo, sess *blockmap.Session) (*blockmap.Point, error) {
	base, ok := sess.Base()
	if !ok {
		return nil, nil
	}
	pts, err := repo.Points(ctx, sess.VM())
	if err != nil {
		return nil, err
	}
	newest := blockmap.Latest(pts)
	if len(pts) == 0 || newest.Gen == base.Gen {
		return &base, nil
	}
	return &newest, nil
}

// planCBTDisk plans disk d since the CBT base. When that base is not the
// session's base, the blocks written by generations after it (up to the
// base) are read as well: the new point builds on the session's base, so
// those blocks must be read from the VM to show what it holds now rather
// than what the base holds.
func planCBTDisk(ctx context.Context, hv Hypervisor, vm *vsphere.VM, snap *vsphere.Snapshot, d vsphere.Disk, sess *blockmap.Session, cbt *blockmap.Point) (Plan, error) {
	plan, err := planDisk(ctx, hv, vm, snap, d, cbt)
	if err != nil || plan.Full || cbt == nil {
		return plan, err
	}
	base, _ := sess.Base()
	if base.Gen == cbt.Gen {
		return plan, nil
	}
	areas, ok, err := sess.BaseDiff(ctx, *cbt, d.Name)
	if err != nil {
		return Plan{}, err
	}
	if !ok {
		return fullPlan(ctx, hv, vm, snap, d, fmt.Sprintf("the newest point %s does not share this disk's history with generation %d, which the new point builds on", cbt.ID, base.Gen))
	}
	plan.Areas = mergeExtents(append(plan.Areas, areas...))
	return plan, nil
}

// mergeExtents sorts extents and merges those that overlap or touch.
func mergeExtents(es []blockmap.Extent) []blockmap.Extent {
	sort.Slice(es, func(i, j int) bool { return es[i].Offset < es[j].Offset })
	out := es[:0]
	for _, e := range es {
		if e.Length <= 0 {
			continue
		}
		if k := len(out); k > 0 && e.Offset <= out[k-1].Offset+out[k-1].Length {
			out[k-1].Length = max(out[k-1].Length, e.Offset+e.Length-out[k-1].Offset)
			continue
		}
		out = append(out, e)
	}
	return out
}

package blockmap

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Policy says which recovery points of a VM to keep. A point is kept if
// any rule keeps it. The newest point is always kept, so a policy can never
// delete a VM's only good point.
type Policy struct {
	KeepLast    int `json:"keep_last" yaml:"keep_last"`
	KeepHourly  int `json:"keep_hourly" yaml:"keep_hourly"`
	KeepDaily   int `json:"keep_daily" yaml:"keep_daily"`
	KeepWeekly  int `json:"keep_weekly" yaml:"keep_weekly"`
	KeepMonthly int `json:"keep_monthly" yaml:"keep_monthly"`
}

// IsZero reports whether the policy has no rule at all.
func (p Policy) IsZero() bool { return p == Policy{} }

// Keep returns the subset of pts (any order) the policy keeps, as a set of
// generations; "newest" and "last" go by the points' times. Buckets are in UTC: for each hour, day, ISO week or month
// the newest point is kept, for the given number of most recent buckets.
func (p Policy) Keep(pts []Point) map[uint32]bool {
	// Newest first by time (see Latest): a repository rebuilt by pull
	// may number an older point higher than a newer one.
	sorted := append([]Point(nil), pts...)
	sort.Slice(sorted, func(i, j int) bool { return newerPoint(sorted[i], sorted[j]) })
	keep := map[uint32]bool{}
	if len(sorted) == 0 {
		return keep
	}
	keep[sorted[0].Gen] = true
	for i := 0; i < p.KeepLast && i < len(sorted); i++ {
		keep[sorted[i].Gen] = true
	}
	bucketRule := func(n int, bucket func(time.Time) string) {
		seen := map[string]bool{}
		for _, pt := range sorted {
			if len(seen) >= n {
				return
			}
			b := bucket(pt.Time.UTC())
			if !seen[b] {
				seen[b] = true
				keep[pt.Gen] = true
			}
		}
	}
	bucketRule(p.KeepHourly, func(t time.Time) string { return t.Format("2006-01-02T15") })
	bucketRule(p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") })
	bucketRule(p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	bucketRule(p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") })
	return keep
}

// PruneResult says what a prune or forget removed (or would remove).
type PruneResult struct {
	DryRun  bool    `json:"dry_run"`
	Kept    []Point `json:"kept"`
	Deleted []Point `json:"deleted"`
	// Busy names the VMs a prune of every VM left alone because another
	// process held them (their points are in Kept).
	Busy []string `json:"busy,omitempty"`
	// Protected are the points the policy would have deleted that a
	// PruneGuard kept, with its reason.
	Protected []ProtectedPoint `json:"protected,omitempty"`
	GCStats
}

// PruneGuard names the points of vm (pts, any order) a prune must keep
// whatever its policy says, by generation, each with the reason told to
// the administrator (backupd/anomaly keeps a VM's last clean point while
// it has suspicious ones).
type PruneGuard func(vm string, pts []Point) map[uint32]string

// ProtectedPoint is a point a PruneGuard kept from a prune.
type ProtectedPoint struct {
	VM     string `json:"vm"`
	Point  string `json:"point"`
	Reason string `json:"reason"`
}

// Prune applies the policy to one VM, or to every VM when vm is "".
// With dryRun nothing is changed.
func (r *Repo) Prune(ctx context.Context, vm string, pol Policy, dryRun bool) (*PruneResult, error) {
	return r.PruneWith(ctx, vm, pol, dryRun, nil)
}

// PruneWith is Prune that also keeps the points guard names (nil: none),
// listed with its reasons in PruneResult.Protected.
func (r *Repo) PruneWith(ctx context.Context, vm string, pol Policy, dryRun bool, guard PruneGuard) (*PruneResult, error) {
	if err := pol.Validate(); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if pol.IsZero() {
		return nil, fmt.Errorf("prune: %w: the policy has no keep rule (last, hourly, daily, weekly or monthly), so it would delete every point", ErrInvalid)
	}
	// One VM's points are read alone: prune runs after every backup
	// (cairn serve), and a whole catalog read per VM grew with the square
	// of the site.
	var cat []VMSummary
	if vm != "" {
		pts, err := r.Points(ctx, vm)
		var nf *PointNotFoundError
		if err != nil && !errors.As(err, &nf) {
			return nil, err
		}
		if len(pts) > 0 {
			cat = []VMSummary{{Name: vm, Points: pts}}
		}
	} else {
		var err error
		if cat, err = r.Catalog(ctx); err != nil {
			return nil, err
		}
	}
	res := &PruneResult{DryRun: dryRun}
	dels := map[string][]uint32{}
	found := false
	for _, v := range cat {
		if vm != "" && v.Name != vm {
			continue
		}
		found = true
		keep := pol.Keep(v.Points)
		var guarded map[uint32]string
		if guard != nil {
			guarded = guard(v.Name, v.Points)
		}
		var del []uint32
		for _, p := range v.Points {
			if why, ok := guarded[p.Gen]; ok && !keep[p.Gen] {
				res.Kept = append(res.Kept, p)
				res.Protected = append(res.Protected, ProtectedPoint{VM: v.Name, Point: p.ID, Reason: why})
				continue
			}
			if keep[p.Gen] {
				res.Kept = append(res.Kept, p)
			} else {
				res.Deleted = append(res.Deleted, p)
				del = append(del, p.Gen)
			}
		}
		if !dryRun && len(del) == 0 {
			// A prune killed after its deletion was durable left the
			// space to release: this run finishes it.
			if err := r.finishInterrupted(ctx, v.Name); err != nil {
				return res, err
			}
		}
		if dryRun || len(del) == 0 {
			continue
		}
		dels[v.Name] = del
	}
	if vm != "" && !found {
		return nil, fmt.Errorf("prune: VM %q: %w: the repository has no recovery points for it", vm, ErrNotFound)
	}
	if len(dels) == 0 {
		return res, nil
	}
	// Every VM's deletion goes into one index update: one open, one
	// sync and one publication instead of one per VM (a prune of 300 VMs
	// spent most of its time opening and closing the index). A VM that
	// is busy (its backup runs) is left as it is and named in the error.
	st, busy, err := r.deletePointsOf(ctx, dels, vm == "")
	res.GCStats = st
	if len(busy) > 0 {
		res.keepBusy(busy)
	}
	if err != nil {
		return res, err
	}
	if len(busy) > 0 {
		return res, fmt.Errorf("prune: %w", errors.Join(busy...))
	}
	return res, nil
}

// keepBusy moves the points of VMs that were busy (their errors are
// *VMLockedError) from Deleted to Kept: nothing of them was deleted.
func (res *PruneResult) keepBusy(busy []error) {
	skipped := map[string]bool{}
	for _, err := range busy {
		var held *VMLockedError
		if errors.As(err, &held) {
			skipped[held.VM] = true
			res.Busy = append(res.Busy, held.VM)
		}
	}
	kept := res.Deleted[:0:0]
	for _, p := range res.Deleted {
		if skipped[p.VM] {
			res.Kept = append(res.Kept, p)
		} else {
			kept = append(kept, p)
		}
	}
	res.Deleted = kept
}

// Forget deletes the given points (ids, generation numbers or "latest") of one VM.
func (r *Repo) Forget(ctx context.Context, vm string, refs []string, dryRun bool) (*PruneResult, error) {
	if !dryRun {
		// A forget killed after its deletion was durable left the space
		// to release: the next one finishes it, even when the points it
		// names are gone already.
		if err := r.finishInterrupted(ctx, vm); err != nil {
			return nil, err
		}
	}
	pts, err := r.Points(ctx, vm)
	if err != nil {
		return nil, err
	}
	res := &PruneResult{DryRun: dryRun}
	var del []uint32
	seen := map[uint32]bool{}
	for _, ref := range refs {
		p, err := FindPoint(pts, vm, ref)
		if err != nil {
			return nil, err
		}
		if !seen[p.Gen] {
			seen[p.Gen] = true
			del = append(del, p.Gen)
			res.Deleted = append(res.Deleted, p)
		}
	}
	for _, p := range pts {
		if !seen[p.Gen] {
			res.Kept = append(res.Kept, p)
		}
	}
	if dryRun {
		return res, nil
	}
	st, err := r.deletePoints(ctx, vm, del)
	if err != nil {
		return res, err
	}
	res.GCStats = st
	return res, nil
}

// deletePoints removes the given generations of one VM (deletePointsOf);
// a VM that is busy is an error (*VMLockedError).
func (r *Repo) deletePoints(ctx context.Context, vm string, gens []uint32) (GCStats, error) {
	st, _, err := r.deletePointsOf(ctx, map[string][]uint32{vm: gens}, false)
	return st, err
}

// deletePointsOf removes catalog records of the given points (generations
// per VM) and, in the same transaction per VM, marks each VM for garbage
// collection (naming the deleted generations); syncs the index once;
// publishes every deletion in catalog.seq in one write; then collects each
// VM. A crash after the first step is finished by the next sweep. When the
// deletion cannot be published, nothing is released and the error wraps
// ErrNotReleased: the points are gone, their space comes back later.
//
// Each VM's lock is taken first. With skipBusy a VM whose lock is held
// is left out and its *VMLockedError returned in busy; without, it is the
// error and nothing is deleted.
func (r *Repo) deletePointsOf(ctx context.Context, dels map[string][]uint32, skipBusy bool) (st GCStats, busy []error, err error) {
	vms := make([]string, 0, len(dels))
	for vm := range dels {
		vms = append(vms, vm)
	}
	sort.Strings(vms)
	todo := vms[:0:0]
	for _, vm := range vms {
		lock, err := r.LockVM(ctx, vm, "cairn prune or forget")
		var held *VMLockedError
		if skipBusy && errors.As(err, &held) {
			busy = append(busy, err)
			continue
		}
		if err != nil {
			return st, busy, err
		}
		defer lock.Release()
		todo = append(todo, vm)
	}
	if len(todo) == 0 {
		return st, busy, nil
	}
	// On a full filesystem the index cannot even be opened: the reserve
	// (reserve.go) makes the room, and is made again afterwards.
	r.releaseReserve()
	defer r.ensureReserve(true)
	err = r.update(ctx, func(db *badger.DB) error {
		for _, vm := range todo {
			if err := r.sweepVM(db, vm); err != nil {
				return err
			}
		}
		published := make(map[string][]uint32, len(todo))
		for _, vm := range todo {
			gens := dels[vm]
			err := db.Update(func(txn *badger.Txn) error {
				for _, g := range gens {
					if err := txn.Delete(vmGenKey(prefixPoint, vm, g)); err != nil {
						return err
					}
					if err := deleteAttachments(txn, vm, g); err != nil {
						return err
					}
				}
				return markGC(txn, vm, gens)
			})
			if err != nil {
				return fmt.Errorf("%s: %w", vm, err)
			}
			published[vm] = gens
		}
		if err := db.Sync(); err != nil {
			return err
		}
		// The deletion is durable; readers learn of it before a byte goes.
		if err := r.publishDeletedOf(published); err != nil {
			return err
		}
		for _, vm := range todo {
			vs, err := r.collect(db, vm)
			st.VersionsDeleted += vs.VersionsDeleted
			st.BytesReleased += vs.BytesReleased
			st.ImagesDeleted += vs.ImagesDeleted
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if len(todo) == 1 {
			return st, busy, fmt.Errorf("delete points of %s: %w", todo[0], err)
		}
		return st, busy, fmt.Errorf("delete points of %d VMs: %w", len(todo), err)
	}
	return st, busy, nil
}

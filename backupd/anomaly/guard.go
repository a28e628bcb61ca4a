package anomaly

import (
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/blockmap"
)

// Flagged reports whether p is suspicious and not acknowledged.
func Flagged(p blockmap.Point, acks Acks) bool {
	v, ok := ReadVerdict(p)
	return ok && v.Status == Suspicious && !acks.Acked(p.VM, p.ID)
}

// LastClean returns, when vm has unacknowledged suspicious points, the
// newest point older than the first of them that is not itself flagged
// (the point to restore from), and that first suspicious point. ok is
// false when there is no flagged point or no clean one before it.
func LastClean(pts []blockmap.Point, acks Acks) (clean, first blockmap.Point, ok bool) {
	sorted := append([]blockmap.Point(nil), pts...)
	sort.Slice(sorted, func(i, j int) bool {
		if !sorted[i].Time.Equal(sorted[j].Time) {
			return sorted[i].Time.Before(sorted[j].Time)
		}
		return sorted[i].Gen < sorted[j].Gen
	})
	at := -1
	for i, p := range sorted {
		if Flagged(p, acks) {
			at = i
			break
		}
	}
	if at <= 0 {
		return clean, first, false
	}
	first = sorted[at]
	// The newest normal (or acknowledged) point, else the newest one that
	// is not flagged (no baseline, or no verdict).
	for _, want := range []func(blockmap.Point) bool{
		func(p blockmap.Point) bool {
			v, ok := ReadVerdict(p)
			return ok && (v.Status == Normal || (v.Status == Suspicious && acks.Acked(p.VM, p.ID)))
		},
		func(p blockmap.Point) bool { return !Flagged(p, acks) },
	} {
		for i := at - 1; i >= 0; i-- {
			if want(sorted[i]) {
				return sorted[i], first, true
			}
		}
	}
	return clean, first, false
}

// Guard is the prune guard of a repository with acks: while a VM has an
// unacknowledged suspicious point, its last clean point (LastClean) is
// kept whatever the retention says, and so is the first suspicious point
// (the evidence, and what keeps the clean point protected after the
// points around it age out).
func Guard(acks Acks) blockmap.PruneGuard {
	return func(vm string, pts []blockmap.Point) map[uint32]string {
		clean, first, ok := LastClean(pts, acks)
		if !ok {
			return nil
		}
		ack := fmt.Sprintf("cairn points ack --vm %s --point %s", vm, first.ID)
		return map[uint32]string{
			clean.Gen: fmt.Sprintf("last clean point before suspicious point %s: kept until that one is acknowledged (%s)", first.ID, ack),
			first.Gen: fmt.Sprintf("first suspicious point: kept with the clean point %s until acknowledged (%s)", clean.ID, ack),
		}
	}
}

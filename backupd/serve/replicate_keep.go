package serve

import "github.com/cairnbackup/cairn/blockmap"

// keptByRemoteRetention returns the points of one VM that the remote's
// retention keeps (all of them when it has none). A point it does not
// keep among the VM's local points is not kept among the local and remote
// points together either (more points only push it further down), so the
// replication skips it: uploading it only for the prune right after to
// delete it again cost every run the upload (and, under Object Lock,
// objects that stay for the lock's days) when the local retention keeps
// more points than the remote's.
//
// The points guard names (nil: none) are replicated whatever the policy
// says: the remote's retention keeps them too (a VM's last clean point
// while it has suspicious ones, backupd/anomaly.Guard).
func keptByRemoteRetention(pol blockmap.Policy, pts []blockmap.Point, guard blockmap.PruneGuard) []blockmap.Point {
	if pol.IsZero() {
		return pts
	}
	keep := pol.Keep(pts)
	var guarded map[uint32]string
	if guard != nil && len(pts) > 0 {
		guarded = guard(pts[0].VM, pts)
	}
	out := make([]blockmap.Point, 0, len(keep))
	for _, p := range pts {
		if _, g := guarded[p.Gen]; keep[p.Gen] || g {
			out = append(out, p)
		}
	}
	return out
}

package backupd

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
)

// judgeFor returns the judge of a new point of vm (blockmap.PointOptions.Judge):
// its figures against the VM's earlier points, with t (nil when t is
// Disabled). Called before the point begins; the VM's lock keeps its
// history as read until the commit. A history that cannot be read leaves
// the point without a baseline, never fails the backup.
func judgeFor(ctx context.Context, repo *blockmap.Repo, vm string, t anomaly.Thresholds, log *slog.Logger) func(blockmap.Point) json.RawMessage {
	if t.Disabled {
		return nil
	}
	pts, err := repo.Points(ctx, vm)
	var nf *blockmap.PointNotFoundError
	if err != nil && !errors.As(err, &nf) {
		log.Warn("cannot read the VM's earlier points: the new point is judged without a baseline", "vm", vm, "error", err)
		pts = nil
	}
	acks, err := anomaly.LoadAcks(repo.Dir())
	if err != nil {
		log.Warn("cannot read acknowledged suspicious points", "error", err)
	}
	return anomaly.JudgeFunc(pts, acks, t)
}

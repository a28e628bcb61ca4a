package backupd

import (
	"encoding/json"
	"log/slog"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
)

// judgeFor returns the judge of a new point (blockmap.PointOptions.Judge):
// its figures against the VM's earlier points, which the commit reads,
// with t and the repository's acknowledgements (nil when t is Disabled).
// Acknowledgements that cannot be read are warned about and count as
// none: the backup never fails for the verdict.
func judgeFor(repo *blockmap.Repo, t anomaly.Thresholds, log *slog.Logger) func(blockmap.Point, []blockmap.Point) json.RawMessage {
	if t.Disabled {
		return nil
	}
	acks, err := anomaly.LoadAcks(repo.Dir())
	if err != nil {
		log.Warn("cannot read acknowledged suspicious points", "error", err)
	}
	return anomaly.JudgeFunc(acks, t)
}

package main

import (
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/blockmap"
)

// pointsJSONVM is a VM of `cairn points --json`: its points, each with
// the verdict of its last boot check when it has one.
type pointsJSONVM struct {
	Name   string           `json:"name"`
	Points []pointJSONEntry `json:"points"`
}

type pointJSONEntry struct {
	blockmap.Point
	// Boot is the last boot check's verdict (cairn verify-boot, serve's
	// boot checks): the BOOT column; absent when never boot-checked.
	Boot *pointBootJSON `json:"boot,omitempty"`
	// Acknowledged is the acknowledgement of a suspicious verdict
	// (cairn points ack); absent when none.
	Acknowledged *anomaly.Ack `json:"acknowledged,omitempty"`
}

type pointBootJSON struct {
	Verdict  string    `json:"verdict"`
	Reason   string    `json:"reason,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

// withBootVerdicts is cat with each point's boot verdict, kept beside
// the point in repoDir.
func withBootVerdicts(repoDir string, cat []blockmap.VMSummary) []pointsJSONVM {
	out := make([]pointsJSONVM, 0, len(cat))
	acks := repoAcks(repoDir)
	for _, v := range cat {
		vm := pointsJSONVM{Name: v.Name, Points: make([]pointJSONEntry, 0, len(v.Points))}
		for _, p := range v.Points {
			e := pointJSONEntry{Point: p}
			if r, ok := boot.LoadResult(repoDir, v.Name, p.ID); ok {
				e.Boot = &pointBootJSON{Verdict: r.Verdict, Reason: r.Reason, Finished: r.Finished.UTC()}
			}
			if a, ok := acks[v.Name][p.ID]; ok {
				e.Acknowledged = &a
			}
			vm.Points = append(vm.Points, e)
		}
		out = append(out, vm)
	}
	return out
}

package main

import (
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// TestRemoteWording: counts of one are singular ("retention 1 day",
// "1 point deleted"), others plural.
func TestRemoteWording(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{count(1, "day"), "1 day"},
		{count(30, "day"), "30 days"},
		{count(int64(0), "pack"), "0 packs"},
		{pruneSummary("off", &remote.PruneReport{Deleted: []blockmap.Point{{}}, PacksDeleted: 1, PacksLocked: 2, Orphans: 1}, "deleted"),
			"remote off: 1 point deleted, 0 kept, 0 locked; 1 pack deleted (0 B), 2 unreferenced packs still locked, 1 orphan pack"},
		{pruneSummary("off", &remote.PruneReport{Deleted: []blockmap.Point{{}}, PacksDeleted: 2}, "would delete"),
			"remote off: 1 point would be deleted, 0 kept, 0 locked; 2 packs would be deleted (0 B), 0 unreferenced packs still locked, 0 orphan packs"},
		{pruneSummary("off", &remote.PruneReport{MapsDeleted: 1, MapsLocked: 2}, "would delete"),
			"remote off: 0 points would be deleted, 0 kept, 0 locked; 0 packs would be deleted (0 B), 0 unreferenced packs still locked, 0 orphan packs; 1 block map would be deleted, 2 unreferenced block maps still locked"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

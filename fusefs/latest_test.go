package fusefs

import (
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestLatestLinkGoesByTime: in a repository rebuilt by pull (the latest
// point pulled first, its history after it) the latest link names the
// newest point by time, not the highest generation.
func TestLatestLinkGoesByTime(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	v := &vmView{name: "web", points: []blockmap.Point{
		{VM: "web", ID: "newest", Gen: 1, Time: t0.Add(time.Hour)},
		{VM: "web", ID: "older", Gen: 2, Time: t0},
	}}
	if p, ok := v.latest(); !ok || p.ID != "newest" {
		t.Fatalf("latest = %s, want newest", p.ID)
	}
}

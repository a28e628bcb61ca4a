package blockmap

import (
	"testing"
	"time"
)

// pulledOutOfOrder is the catalog of a VM rebuilt by pull: its latest
// point pulled first (generation 1), its history after it (2, 3).
func pulledOutOfOrder() []Point {
	t0 := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	return []Point{
		{VM: "v", ID: "newest", Gen: 1, Time: t0.Add(2 * time.Hour)},
		{VM: "v", ID: "oldest", Gen: 2, Time: t0},
		{VM: "v", ID: "middle", Gen: 3, Time: t0.Add(time.Hour)},
	}
}

func TestLatestGoesByTime(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		pts  []Point
		want string
	}{
		{"backed up in order", []Point{{ID: "a", Gen: 1, Time: t0}, {ID: "b", Gen: 2, Time: t0.Add(time.Minute)}}, "b"},
		{"pulled latest first", pulledOutOfOrder(), "newest"},
		{"same time: higher generation", []Point{{ID: "a", Gen: 2, Time: t0}, {ID: "b", Gen: 1, Time: t0}}, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := FindPoint(tc.pts, "v", "latest")
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != tc.want || Latest(tc.pts).ID != tc.want {
				t.Fatalf("latest = %s (Latest %s), want %s", p.ID, Latest(tc.pts).ID, tc.want)
			}
			if v, ok := (VMSummary{Name: "v", Points: tc.pts}).Latest(); !ok || v.ID != tc.want {
				t.Fatalf("VMSummary.Latest = %s, want %s", v.ID, tc.want)
			}
		})
	}
}

func TestKeepGoesByTime(t *testing.T) {
	pts := pulledOutOfOrder()
	ids := func(keep map[uint32]bool) map[string]bool {
		out := map[string]bool{}
		for _, p := range pts {
			if keep[p.Gen] {
				out[p.ID] = true
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		pol  Policy
		want []string
	}{
		{"keep-last 1", Policy{KeepLast: 1}, []string{"newest"}},
		{"keep-last 2", Policy{KeepLast: 2}, []string{"newest", "middle"}},
		{"keep-daily 1", Policy{KeepDaily: 1}, []string{"newest"}},
		{"keep-hourly 2", Policy{KeepHourly: 2}, []string{"newest", "middle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(tc.pol.Keep(pts))
			if len(got) != len(tc.want) {
				t.Fatalf("kept %v, want %v", got, tc.want)
			}
			for _, id := range tc.want {
				if !got[id] {
					t.Fatalf("kept %v, want %v", got, tc.want)
				}
			}
		})
	}
}

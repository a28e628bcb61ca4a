package anomaly

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

const mib = 1 << 20

// pt is point gen of vm "v" with one disk written/high MiB (first: the
// disk's first backup).
func pt(gen uint32, written, high int64, first bool) blockmap.Point {
	f, _ := json.Marshal(Figures{Version: 1, WrittenBytes: written * mib, HighEntropyBytes: high * mib})
	d := blockmap.DiskInfo{Name: "d0", Content: f, Lineage: 1}
	if first {
		d.Lineage = gen
	}
	return blockmap.Point{VM: "v", ID: time.Unix(int64(gen)*86400, 0).UTC().Format(blockmap.PointIDLayout), Gen: gen,
		Time: time.Unix(int64(gen)*86400, 0), Disks: []blockmap.DiskInfo{d}}
}

// history is points 2..n+1 of (written, high) MiB each after a first full.
func history(fig ...[2]int64) []blockmap.Point {
	h := []blockmap.Point{pt(1, 10000, 500, true)}
	for i, f := range fig {
		h = append(h, pt(uint32(i+2), f[0], f[1], false))
	}
	return h
}

func repeat(n int, f [2]int64) [][2]int64 {
	out := make([][2]int64, n)
	for i := range out {
		out[i] = f
	}
	return out
}

func withVerdict(p blockmap.Point, status string) blockmap.Point {
	p.Verdict, _ = json.Marshal(Verdict{Status: status})
	return p
}

func TestJudge(t *testing.T) {
	textVM := history(repeat(14, [2]int64{40, 2})...)
	mediaVM := history(repeat(14, [2]int64{900, 850})...)
	suspAt5 := history(repeat(6, [2]int64{40, 2})...)
	suspAt5[5] = withVerdict(pt(6, 3000, 2900, false), Suspicious)
	for _, c := range []struct {
		name    string
		hist    []blockmap.Point
		p       blockmap.Point
		acks    Acks
		th      Thresholds
		want    string
		because string // part of the reason
	}{
		{"first backup", nil, pt(1, 1000, 900, true), nil, Thresholds{}, NoBaseline, "backed up for the first time"},
		{"too few points", history([2]int64{40, 2}, [2]int64{40, 2}), pt(4, 2000, 1900, false), nil, Thresholds{}, NoBaseline, "2 earlier point(s) with figures, 3 needed"},
		{"ordinary day", textVM, pt(16, 50, 3, false), nil, Thresholds{}, Normal, "6 % of 50.0 MiB changed looks encrypted; this VM's usual: 5 % of 40.0 MiB over its last 14 points"},
		{"ransomware", textVM, pt(16, 1200, 1100, false), nil, Thresholds{}, Suspicious, "92 % of 1.2 GiB changed looks encrypted; this VM's usual: 5 % of 40.0 MiB over its last 14 points"},
		{"under the byte floor", textVM, pt(16, 40, 35, false), nil, Thresholds{}, Normal, "88 %"},
		{"floor lowered per job", textVM, pt(16, 40, 35, false), nil, Thresholds{MinBytes: 16 * mib}, Suspicious, "88 %"},
		{"under the share floor", textVM, pt(16, 4000, 1600, false), nil, Thresholds{}, Normal, "40 %"},
		{"media VM stays normal", mediaVM, pt(16, 1000, 950, false), nil, Thresholds{}, Normal, "usual: 94 %"},
		{"media VM, big surge still below share rise", mediaVM, pt(16, 8000, 7900, false), nil, Thresholds{}, Normal, "99 %"},
		{"volume not above usual", history(repeat(5, [2]int64{2000, 600})...), pt(7, 2000, 1400, false), nil, Thresholds{}, Normal, "70 %"},
		{"disabled min baseline lowered", history([2]int64{40, 2}), pt(3, 1200, 1100, false), nil, Thresholds{MinBaseline: 1}, Suspicious, "over its last 1 points"},
		{"unacknowledged alarm left out of baseline", suspAt5, pt(8, 1200, 1100, false), nil, Thresholds{}, Suspicious, "over its last 5 points"},
		{"acknowledged alarm in baseline", suspAt5, pt(8, 1200, 1100, false), Acks{"v": {suspAt5[5].ID: Ack{}}}, Thresholds{}, Normal, "over its last 6 points"},
		{"baseline window", history(append(repeat(5, [2]int64{100, 95}), repeat(3, [2]int64{40, 2})...)...), pt(10, 1200, 1100, false), nil, Thresholds{BaselinePoints: 3}, Suspicious, "over its last 3 points"},
		{"newer points ignored", append(textVM, pt(40, 1200, 1100, false)), pt(16, 50, 3, false), nil, Thresholds{}, Normal, "last 14 points"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(c.p, c.hist, c.acks, c.th)
			if v.Status != c.want || !strings.Contains(v.Reason, c.because) {
				t.Errorf("verdict %s (%s), want %s with %q", v.Status, v.Reason, c.want, c.because)
			}
		})
	}
}

func TestThresholdsValidate(t *testing.T) {
	for _, c := range []struct {
		th  Thresholds
		bad string
	}{
		{Thresholds{}, ""},
		{DefaultThresholds, ""},
		{Thresholds{MinShare: 101}, "min_share"},
		{Thresholds{ShareRise: -1}, "share_rise"},
		{Thresholds{MinBytes: -1}, "min_bytes"},
		{Thresholds{VolumeFactor: -2}, "volume_factor"},
		{Thresholds{BaselinePoints: 2, MinBaseline: 3}, "min_baseline"},
	} {
		err := c.th.Validate()
		if (err == nil) != (c.bad == "") || (err != nil && !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%+v: error %v, want one naming %q", c.th, err, c.bad)
		}
	}
}

func TestGuard(t *testing.T) {
	pts := []blockmap.Point{
		withVerdict(pt(1, 1, 1, true), NoBaseline),
		withVerdict(pt(2, 1, 1, false), Normal),
		withVerdict(pt(3, 1, 1, false), Normal),
		withVerdict(pt(4, 1, 1, false), NoBaseline),
		withVerdict(pt(5, 1, 1, false), Suspicious),
		withVerdict(pt(6, 1, 1, false), Suspicious),
		withVerdict(pt(7, 1, 1, false), Normal),
	}
	g := Guard(nil)("v", pts)
	if len(g) != 2 || g[3] == "" || g[5] == "" {
		t.Fatalf("guard keeps %v, want generation 3 (the newest normal point before the first suspicious one) and 5", g)
	}
	if !strings.Contains(g[3], "cairn points ack --vm v --point "+pts[4].ID) {
		t.Errorf("reason %q does not say how to acknowledge", g[3])
	}
	acks := Acks{"v": {pts[4].ID: Ack{}}}
	g = Guard(acks)("v", pts)
	if len(g) != 2 || g[5] == "" || g[6] == "" {
		t.Fatalf("with the first alarm acknowledged, guard keeps %v, want 5 (acknowledged: clean) and 6", g)
	}
	acks["v"][pts[5].ID] = Ack{}
	if g = Guard(acks)("v", pts); len(g) != 0 {
		t.Fatalf("with every alarm acknowledged, guard keeps %v", g)
	}
	if g = Guard(nil)("v", pts[:4]); len(g) != 0 {
		t.Fatalf("without alarms, guard keeps %v", g)
	}
}

func TestAcksRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if a, err := LoadAcks(dir); err != nil || len(a) != 0 {
		t.Fatalf("no file: %v %v", a, err)
	}
	if err := Acknowledge(dir, Ack{VM: "v", Point: "p1", By: "alice", Note: "video import"}); err != nil {
		t.Fatal(err)
	}
	if err := Acknowledge(dir, Ack{VM: "w", Point: "p2"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, AckFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ack file: %v, mode %v, want 0600 like every repository file", err, fi.Mode().Perm())
	}
	a, err := LoadAcks(dir)
	if err != nil || !a.Acked("v", "p1") || !a.Acked("w", "p2") || a.Acked("v", "p2") || a["v"]["p1"].By != "alice" {
		t.Fatalf("acks %v %v", a, err)
	}
}

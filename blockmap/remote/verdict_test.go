package remote

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// writeJudged commits a point of vm's one disk (8 MiB) with the real
// content meter and judge of backupd/anomaly, as cairn backup does:
// full writes changes on an empty disk, else only changes change.
func writeJudged(t *testing.T, repo *blockmap.Repo, vm string, when time.Time, full bool, changes map[int64][]byte) blockmap.Point {
	t.Helper()
	th := anomaly.Thresholds{MinBytes: 1 << 20, MinBaseline: 2}.WithDefaults()
	s, err := repo.BeginPoint(ctx(t), vm, blockmap.PointOptions{Time: when, Judge: anomaly.JudgeFunc(anomaly.Acks{}, th)})
	if err != nil {
		t.Fatal(err)
	}
	o := blockmap.DiskOptions{Full: full, Content: anomaly.NewMeter()}
	for off, b := range changes {
		o.Changed = append(o.Changed, blockmap.Extent{Offset: off, Length: int64(len(b))})
	}
	if full {
		o.Changed = nil
	}
	w, err := s.AddDisk(ctx(t), "disk-0", 8<<20, o)
	if err != nil {
		t.Fatal(err)
	}
	for off, b := range changes {
		if _, err := w.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func verdictOf(p blockmap.Point) string {
	v, _ := anomaly.ReadVerdict(p)
	return v.Status
}

// TestSuspiciousPointsOffsite: a VM's points judged by backupd/anomaly
// (ordinary text changes, then a point whose changes are random bytes:
// suspicious) are replicated. The remote's points carry each verdict and
// disk's content figures (the manifest holds the point as committed);
// remote retention with anomaly.Guard keeps the last clean point the
// policy would delete (keep_last 2), and deletes it once the suspicious
// point is acknowledged (acks are the local repository's); a pull into an
// empty repository (a rebuilt appliance) gets the verdicts and figures
// back, so its LastClean is the same point.
func TestSuspiciousPointsOffsite(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	t0 := time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)
	day := func(i int) time.Time { return t0.Add(time.Duration(i) * 24 * time.Hour) }
	text := func(seed int, n int) []byte {
		var b bytes.Buffer
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "day %d line %d: request served in %d ms\n", seed, i, i*7%300)
		}
		return b.Bytes()[:n]
	}
	pts := []blockmap.Point{writeJudged(t, repo, "vm", day(0), true, map[int64][]byte{0: text(0, 4<<20)})}
	for i := 1; i <= 3; i++ {
		pts = append(pts, writeJudged(t, repo, "vm", day(i), false, map[int64][]byte{int64(i) << 20: text(i, 256<<10)}))
	}
	rnd := rand.New(rand.NewPCG(5, 5))
	pts = append(pts, writeJudged(t, repo, "vm", day(4), false, map[int64][]byte{0: randBytes(rnd, 4<<20)}))
	pts = append(pts, writeJudged(t, repo, "vm", day(5), false, map[int64][]byte{6 << 20: text(5, 256<<10)}))
	var got []string
	for _, p := range pts {
		got = append(got, verdictOf(p))
	}
	if want := "[no-baseline no-baseline no-baseline normal suspicious normal]"; fmt.Sprint(got) != want {
		t.Fatalf("local verdicts %v, want %s", got, want)
	}
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	rpts, _, err := r.Points(ctx(t))
	if err != nil || len(rpts) != len(pts) {
		t.Fatalf("remote points %v %v", rpts, err)
	}
	for i, p := range rpts {
		if p.ID != pts[i].ID || !bytes.Equal(p.Verdict, pts[i].Verdict) || !bytes.Equal(p.Disks[0].Content, pts[i].Disks[0].Content) {
			t.Errorf("remote point %s: verdict %s content %s; local %s: %s %s", p.ID, p.Verdict, p.Disks[0].Content, pts[i].ID, pts[i].Verdict, pts[i].Disks[0].Content)
		}
	}

	// Remote retention keep_last 2 would keep only the suspicious point
	// and the one after it.
	pol := blockmap.Policy{KeepLast: 2}
	rep, err := r.PruneWith(ctx(t), "vm", pol, false, anomaly.Guard(anomaly.Acks{}))
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ps []blockmap.Point) map[string]bool {
		m := map[string]bool{}
		for _, p := range ps {
			m[p.ID] = true
		}
		return m
	}
	kept := ids(rep.Kept)
	if len(rep.Deleted) != 3 || len(kept) != 3 || !kept[pts[3].ID] || !kept[pts[4].ID] || !kept[pts[5].ID] ||
		len(rep.Protected) != 1 || rep.Protected[0].Point != pts[3].ID {
		t.Fatalf("remote prune with the guard: kept %v deleted %v protected %+v; want the clean point %s kept", kept, ids(rep.Deleted), rep.Protected, pts[3].ID)
	}

	// A rebuilt appliance pulls the remaining points: verdicts and
	// figures come back, and it knows the last clean point.
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	var pulled []blockmap.Point
	pullCache := cacheDir(t)
	for _, p := range pts[3:] {
		np, _, _, err := r.PullWith(ctx(t), fresh, "vm", p.ID, PullOptions{CacheDir: pullCache})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(np.Verdict, p.Verdict) || !bytes.Equal(np.Disks[0].Content, p.Disks[0].Content) {
			t.Errorf("pulled %s: verdict %s content %s; want %s %s", p.ID, np.Verdict, np.Disks[0].Content, p.Verdict, p.Disks[0].Content)
		}
		pulled = append(pulled, np)
	}
	stored, err := fresh.Points(ctx(t), "vm")
	if err != nil {
		t.Fatal(err)
	}
	if clean, first, ok := anomaly.LastClean(stored, anomaly.Acks{}); !ok || clean.ID != pts[3].ID || first.ID != pts[4].ID {
		t.Errorf("rebuilt repository: last clean %q before %q (%v); want %s before %s", clean.ID, first.ID, ok, pts[3].ID, pts[4].ID)
	}
	sameLocal(t, repo, fresh, pts[4], pulled[1])

	// Acknowledged (locally): the clean point is no longer kept.
	acks := anomaly.Acks{"vm": {pts[4].ID: anomaly.Ack{VM: "vm", Point: pts[4].ID}}}
	rep, err = r.PruneWith(ctx(t), "vm", pol, false, anomaly.Guard(acks))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 1 || rep.Deleted[0].ID != pts[3].ID || len(rep.Protected) != 0 {
		t.Fatalf("remote prune after the ack: deleted %v protected %+v; want %s deleted", ids(rep.Deleted), rep.Protected, pts[3].ID)
	}
}

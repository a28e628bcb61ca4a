package remote

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestPullKeepsPointID: two points of one VM in one second are T and T-2.
// Pulled alone into a new repository, T-2 keeps its id (it became T, and
// the real T was then "already there", its bytes never pulled); pulling
// everything after it brings T with T's bytes.
func TestPullKeepsPointID(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(7, 8))
	t0 := time.Date(2026, 12, 6, 11, 25, 14, 100e6, time.UTC)
	var pts []blockmap.Point
	for i := range 2 {
		d := diskSpec{name: "d0", size: 4 << 20, data: map[int64][]byte{0: randBytes(rnd, 1<<20)}}
		pts = append(pts, writePoint(t, repo, "s", t0.Add(time.Duration(i)*300*time.Millisecond), []diskSpec{d}))
	}
	if pts[0].ID == pts[1].ID || pts[1].ID != pts[0].ID+"-2" {
		t.Fatalf("fixture: point ids %s, %s", pts[0].ID, pts[1].ID)
	}
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	fresh := newRepoAt(t, filepath.Join(t.TempDir(), "fresh"))
	for _, i := range []int{1, 0, 1} {
		p := pts[i]
		np, pulled, err := r.Pull(ctx(t), fresh, p.VM, p.ID)
		if err != nil {
			t.Fatalf("pull %s: %v", p.ID, err)
		}
		if np.ID != p.ID {
			t.Fatalf("pulled %s as %s", p.ID, np.ID)
		}
		if pulled != (i == 0 || len(mustPoints(t, fresh, "s")) == 1) {
			t.Fatalf("pull %s: pulled %v", p.ID, pulled)
		}
		sameLocal(t, repo, fresh, p, np)
	}
	if got := mustPoints(t, fresh, "s"); len(got) != 2 {
		t.Fatalf("fresh repository holds %d points, want 2", len(got))
	}
}

func mustPoints(t *testing.T, repo *blockmap.Repo, vm string) []blockmap.Point {
	t.Helper()
	pts, err := repo.Points(ctx(t), vm)
	if err != nil {
		t.Fatal(err)
	}
	return pts
}

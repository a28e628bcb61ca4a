package remote

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestPruneRemote: prune deletes the points outside the policy and the
// packs only they referenced; the kept point still pulls byte for byte and
// verifies; a dry run changes nothing.
func TestPruneRemote(t *testing.T) { s3test.Each(t, testPruneRemote) }

func testPruneRemote(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	repo := testutil.NewRepo(t)
	p1 := bigPoint(t, repo, "vm", 21)
	rnd := rand.New(rand.NewPCG(22, 23))
	bs := int64(repo.BlockSize())
	// p2 rewrites the first 4 MiB: p1's blocks there are referenced by p1 only.
	p2 := writeIncr(t, repo, "vm", "disk-0", 24<<20, p1.Time.Add(time.Hour), map[int64][]byte{0: randBytes(rnd, 4<<20)})
	p3 := writeIncr(t, repo, "vm", "disk-0", 24<<20, p1.Time.Add(2*time.Hour), map[int64][]byte{8 * bs: randBytes(rnd, int(bs))})
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1, p2, p3}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	before := e.storedBytes()
	dry, err := r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Deleted) != 2 || dry.PacksDeleted == 0 || e.storedBytes() != before {
		t.Fatalf("dry run: %+v, stored %d -> %d", dry, before, e.storedBytes())
	}
	rep, err := r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	after := e.storedBytes()
	t.Logf("prune: %d points deleted, %d packs (%d bytes) freed; stored %d -> %d", len(rep.Deleted), rep.PacksDeleted, rep.BytesFreed, before, after)
	if len(rep.Deleted) != 2 || len(rep.Kept) != 1 || rep.Kept[0].ID != p3.ID || rep.PacksDeleted != dry.PacksDeleted || after >= before {
		t.Fatalf("prune: %+v", rep)
	}
	pts, _, err := r.Points(ctx(t))
	if err != nil || len(pts) != 1 {
		t.Fatalf("points after prune: %v %v", pts, err)
	}
	if v, err := r.Verify(ctx(t), VerifyOptions{}); err != nil || !v.OK() {
		t.Fatalf("verify after prune: %v %+v", err, v)
	}
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	np, _, err := r.Pull(ctx(t), fresh, p3.VM, p3.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameLocal(t, repo, fresh, p3, np)
	// Replicating p1 again after the prune re-uploads what was deleted
	// (the block cache follows the remote).
	st, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cacheDir(t)})
	if err != nil || st.BlocksNew == 0 {
		t.Fatalf("re-replicate p1: %v, %+v", err, st)
	}
	if v, err := r.Verify(ctx(t), VerifyOptions{}); err != nil || !v.OK() {
		t.Fatalf("verify after re-replicate: %v %+v", err, v)
	}
}

// TestPruneRemoteLeavesLocked: under Object Lock, forget deletes nothing
// whose retention has not passed and says until when.
func TestPruneRemoteLeavesLocked(t *testing.T) { s3test.Each(t, testPruneRemoteLeavesLocked) }

func testPruneRemoteLeavesLocked(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 1)
	repo := testutil.NewRepo(t)
	p1 := bigPoint(t, repo, "vm", 31)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	before := e.objects("")
	rep, err := r.Forget(ctx(t), []blockmap.Point{p1}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 0 || len(rep.Locked) != 1 || rep.Locked[0].Until.Before(time.Now().Add(23*time.Hour)) || rep.PacksDeleted != 0 {
		t.Fatalf("forget of a locked point: %+v", rep)
	}
	if after := e.objects(""); len(after) != len(before) {
		t.Fatalf("%d objects after forget, %d before", len(after), len(before))
	}
	if pts, _, err := r.Points(ctx(t)); err != nil || len(pts) != 1 {
		t.Fatalf("points: %v %v", pts, err)
	}
}

// TestPruneRemoteOrdersByTime: points replicated from a repository rebuilt
// by pull carry that repository's generations, which can be lower than
// older points'; prune must still keep the newest point by time.
func TestPruneRemoteOrdersByTime(t *testing.T) {
	e := newEnv(t, 0)
	repoA := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(51, 52))
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	var pts []blockmap.Point
	for i := range 3 {
		pts = append(pts, writePoint(t, repoA, "vm", t0.Add(time.Duration(i)*time.Hour),
			[]diskSpec{{name: "d", size: 1 << 20, data: map[int64][]byte{0: randBytes(rnd, 256<<10)}}}))
	}
	r := e.open()
	if _, err := r.Replicate(ctx(t), repoA, pts, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	// Disaster: repository B pulls only the newest point (its generation 1)
	// and backs up once more (generation 2, newest of all).
	repoB := newRepoAt(t, t.TempDir()+"/b")
	if _, _, err := r.Pull(ctx(t), repoB, "vm", pts[2].ID); err != nil {
		t.Fatal(err)
	}
	q := writePoint(t, repoB, "vm", t0.Add(5*time.Hour), []diskSpec{{name: "d", size: 1 << 20, data: map[int64][]byte{0: randBytes(rnd, 256<<10)}}})
	if q.Gen != 2 {
		t.Fatalf("new point has generation %d", q.Gen)
	}
	if _, err := r.Replicate(ctx(t), repoB, []blockmap.Point{q}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Prune(ctx(t), "vm", blockmap.Policy{KeepLast: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Kept) != 1 || rep.Kept[0].ID != q.ID || len(rep.Deleted) != 3 {
		t.Fatalf("prune keeps %v and deletes %d points; want only %s kept", rep.Kept, len(rep.Deleted), q.ID)
	}
}

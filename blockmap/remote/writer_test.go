package remote

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestSplitBrainPruneRefused: the old appliance comes back (a stale
// repository) while the new one, rebuilt by pull, replicates to the same
// remote. The new point dedups against the packs of a point the old
// appliance then forgets, between the new appliance's pack listing and
// its manifest: without a writer claim that forget deleted the packs the
// new point's manifest refers to, and the committed point read as
// damaged. With it the new appliance (after TakeOver) is the writer, the
// old one's forget and replicate are refused naming it, and the new point
// verifies and pulls byte for byte.
func TestSplitBrainPruneRefused(t *testing.T) {
	e := newEnv(t, 0)
	repoA := testutil.NewRepo(t)
	p1 := bigPoint(t, repoA, "vm", 31)
	oA, oB := e.opts, e.opts
	oA.Writer = &Writer{ID: "old-id", Host: "old-host", Repo: "/srv/old"}
	oB.Writer = &Writer{ID: "new-id", Host: "new-host", Repo: "/srv/new"}
	rA, err := Open(ctx(t), oA)
	if err != nil {
		t.Fatal(err)
	}
	defer rA.Close()
	if _, err := rA.Replicate(ctx(t), repoA, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	if w, err := rA.CurrentWriter(ctx(t)); err != nil || w == nil || w.ID != "old-id" || w.Host != "old-host" {
		t.Fatalf("claim after the first replication: %+v, %v", w, err)
	}

	// The new appliance: pull, then its first replication is refused
	// until it takes the remote over.
	repoB := newRepoAt(t, t.TempDir()+"/new")
	rB, err := Open(ctx(t), oB)
	if err != nil {
		t.Fatal(err)
	}
	defer rB.Close()
	np, _, err := rB.Pull(ctx(t), repoB, p1.VM, p1.ID)
	if err != nil {
		t.Fatal(err)
	}
	cdB := cacheDir(t)
	_, err = rB.Replicate(ctx(t), repoB, []blockmap.Point{np}, ReplicateOptions{CacheDir: cdB})
	var ow *OtherWriterError
	if !errors.As(err, &ow) || !errors.Is(err, ErrOtherWriter) || ow.Owner.Host != "old-host" || ow.Owner.Repo != "/srv/old" {
		t.Fatalf("the new appliance's replication before take over: %v", err)
	}
	prev, err := rB.TakeOver(ctx(t))
	if err != nil || prev == nil || prev.ID != "old-id" {
		t.Fatalf("take over: replaced %+v, %v", prev, err)
	}
	rnd := rand.New(rand.NewPCG(32, 33))
	p2 := writeIncr(t, repoB, "vm", "disk-0", 24<<20, np.Time.Add(time.Hour), map[int64][]byte{0: randBytes(rnd, 256<<10)})

	// The old appliance prunes while the new one replicates.
	var forgetErr error
	forgot := false
	rB.beforeManifest = func(*manifest) {
		if !forgot {
			forgot = true
			_, forgetErr = rA.Forget(ctx(t), []blockmap.Point{p1}, false)
		}
	}
	st, err := rB.Replicate(ctx(t), repoB, []blockmap.Point{np, p2}, ReplicateOptions{CacheDir: cdB})
	if err != nil || len(st.Replicated) != 1 || len(st.Present) != 1 {
		t.Fatalf("the new appliance's replication: %+v, %v", st, err)
	}
	if !forgot || !errors.As(forgetErr, &ow) || ow.Owner.ID != "new-id" || ow.Owner.Host != "new-host" {
		t.Fatalf("the old appliance's forget during the new one's replication: %v", forgetErr)
	}
	if v, err := rB.Verify(ctx(t), VerifyOptions{}); err != nil || !v.OK() {
		t.Fatalf("verify after both appliances wrote: %v %+v", err, v)
	}
	fresh := newRepoAt(t, t.TempDir()+"/check")
	got, _, err := rB.Pull(ctx(t), fresh, p2.VM, p2.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameLocal(t, repoB, fresh, p2, got)

	// The old appliance's own new point is refused too, and nothing of it
	// is written; its prune dry run (which deletes nothing) still runs.
	p3 := writeIncr(t, repoA, "vm", "disk-0", 24<<20, p1.Time.Add(30*time.Minute), map[int64][]byte{0: randBytes(rnd, 64<<10)})
	before := e.objects("")
	if _, err := rA.Replicate(ctx(t), repoA, []blockmap.Point{p1, p3}, ReplicateOptions{CacheDir: cacheDir(t)}); !errors.Is(err, ErrOtherWriter) {
		t.Fatalf("the old appliance's replication after the take over: %v", err)
	}
	if after := e.objects(""); len(after) != len(before) {
		t.Fatalf("a refused replication wrote objects: %d -> %d", len(before), len(after))
	}
	if _, err := rA.Prune(ctx(t), "", blockmap.Policy{KeepLast: 1}, true); err != nil {
		t.Fatalf("dry run of the old appliance: %v", err)
	}
}

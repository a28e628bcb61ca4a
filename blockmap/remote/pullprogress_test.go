package remote

import (
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestPullWithProgress: PullWith tells its progress hook each disk's data
// bytes before it starts and every block written after, and says what it
// downloaded (at least the packed blocks) and wrote.
func TestPullWithProgress(t *testing.T) { s3test.Each(t, testPullWithProgress) }

func testPullWithProgress(t *testing.T, c s3test.Engine) {
	e := newEnvOn(t, c, 0)
	repo := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(3, 4))
	disks := []diskSpec{
		{name: "d0", size: 8 << 20, data: map[int64][]byte{0: randBytes(rnd, 1<<20), 4 << 20: randBytes(rnd, 512<<10)}},
		{name: "d1", size: 4 << 20, data: map[int64][]byte{1 << 20: randBytes(rnd, 256<<10)}},
	}
	p := writePoint(t, repo, "pp", time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC), disks)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	fresh := newRepoAt(t, filepath.Join(t.TempDir(), "fresh"))
	var mu sync.Mutex
	totals, added, ended := map[string]int64{}, map[string]int64{}, map[string]bool{}
	prog := func(vm, disk string, total int64) (func(int64), func()) {
		mu.Lock()
		defer mu.Unlock()
		if vm != "pp" {
			t.Errorf("progress for VM %q", vm)
		}
		totals[disk] = total
		return func(n int64) { mu.Lock(); added[disk] += n; mu.Unlock() }, func() { mu.Lock(); ended[disk] = true; mu.Unlock() }
	}
	np, did, st, err := r.PullWith(ctx(t), fresh, p.VM, p.ID, PullOptions{Progress: prog})
	if err != nil || !did {
		t.Fatalf("PullWith: %v (pulled %v)", err, did)
	}
	sameLocal(t, repo, fresh, p, np)
	want := map[string]int64{"d0": 1<<20 + 512<<10, "d1": 256 << 10}
	for d, n := range want {
		if totals[d] != n || added[d] != n || !ended[d] {
			t.Errorf("disk %s: progress total %d, added %d, ended %v; want %d", d, totals[d], added[d], ended[d], n)
		}
	}
	if st.BytesData != want["d0"]+want["d1"] {
		t.Errorf("BytesData %d, want %d", st.BytesData, want["d0"]+want["d1"])
	}
	// Random blocks do not compress: the packed blobs alone are about
	// the data, plus the manifest and the map.
	if st.BytesDownloaded < st.BytesData {
		t.Errorf("BytesDownloaded %d < the %d data bytes written", st.BytesDownloaded, st.BytesData)
	}
	// Already there: nothing moves.
	_, did, st, err = r.PullWith(ctx(t), fresh, p.VM, p.ID, PullOptions{Progress: prog})
	if err != nil || did || st.BytesData != 0 {
		t.Errorf("second PullWith: %v, pulled %v, %+v", err, did, st)
	}
}

package remote

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// twoVMs writes two VMs with two generations each: random, compressible
// and zero regions, a partial last block, a second disk.
func twoVMs(t *testing.T, repo *blockmap.Repo) []blockmap.Point {
	rnd := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)
	var pts []blockmap.Point
	for i, vm := range []string{"web", "db"} {
		base := randBytes(rnd, 3<<20)
		d1 := diskSpec{name: "disk-0", size: 16<<20 + 1000, data: map[int64][]byte{0: base, 5 << 20: textBytes(2 << 20), 16 << 20: randBytes(rnd, 1000)}}
		d2 := diskSpec{name: "disk-1", size: 4 << 20, data: map[int64][]byte{1 << 20: randBytes(rnd, 320<<10)}}
		pts = append(pts, writePoint(t, repo, vm, t0.Add(time.Duration(i)*time.Hour), []diskSpec{d1, d2}))
		// Second generation: a little changed.
		d1.data[64<<10] = randBytes(rnd, 128<<10)
		pts = append(pts, writePoint(t, repo, vm, t0.Add(24*time.Hour+time.Duration(i)*time.Hour), []diskSpec{d1, d2}))
	}
	return pts
}

// TestReplicatePullRoundTrip replicates several VMs and generations,
// lists them remotely, reads them through the remote reader and pulls each
// into a fresh repository: every disk equals the local one byte for byte,
// with the same data map, time, consistency and metadata.
func TestReplicatePullRoundTrip(t *testing.T) { s3test.Each(t, testReplicatePullRoundTrip) }

func testReplicatePullRoundTrip(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	repo := testutil.NewRepo(t)
	pts := twoVMs(t, repo)
	r := e.open()
	st, err := r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Replicated) != 4 || st.Packs < 2 {
		t.Fatalf("replicated %d points in %d packs", len(st.Replicated), st.Packs)
	}
	t.Logf("read %d blocks, %d new, %d raw bytes -> %d in packs, %d uploaded", st.BlocksRead, st.BlocksNew, st.RawNew, st.PackBytes, st.BytesUploaded)
	// Object names say nothing about VMs or disks.
	opaque := regexp.MustCompile(`^cairn/(config|(packs|index|points|maps)/[0-9a-f]{64})$`)
	for name := range e.objects("") {
		if !opaque.MatchString(name) {
			t.Fatalf("object name %q is not opaque", name)
		}
	}
	rpts, bad, err := r.Points(ctx(t))
	if err != nil || len(bad) != 0 {
		t.Fatalf("points: %v %v", err, bad)
	}
	if len(rpts) != 4 {
		t.Fatalf("remote lists %d points, want 4", len(rpts))
	}
	fresh := newRepoAt(t, filepath.Join(t.TempDir(), "fresh"))
	for _, p := range pts {
		dr, err := r.OpenDisk(ctx(t), p.VM, p.ID, "disk-0", 0)
		if err != nil {
			t.Fatal(err)
		}
		lr, _ := repo.OpenDisk(ctx(t), p, "disk-0")
		if !bytes.Equal(readAll(t, dr, dr.Size()), readAll(t, lr, lr.Size())) {
			t.Fatalf("%s %s: remote reader differs", p.VM, p.ID)
		}
		if !equalExtents(dr.DataExtents(), lr.DataExtents()) {
			t.Fatalf("%s %s: remote data map %v, local %v", p.VM, p.ID, dr.DataExtents(), lr.DataExtents())
		}
		lr.Close()
		np, pulled, err := r.Pull(ctx(t), fresh, p.VM, p.ID)
		if err != nil || !pulled {
			t.Fatalf("pull %s %s: %v (pulled %v)", p.VM, p.ID, err, pulled)
		}
		if np.ID != p.ID || !np.Time.Equal(p.Time) || np.Consistency != p.Consistency || string(np.Meta) != string(p.Meta) {
			t.Fatalf("pulled point %+v, want %+v", np, p)
		}
		sameLocal(t, repo, fresh, p, np)
	}
	// A second replication finds everything there.
	st, err = r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)})
	if err != nil || len(st.Replicated) != 0 || len(st.Present) != 4 || st.BytesUploaded != 0 {
		t.Fatalf("second replication: %v, %+v", err, st)
	}
	// Pulling again does nothing.
	if _, pulled, err := r.Pull(ctx(t), fresh, pts[0].VM, pts[0].ID); err != nil || pulled {
		t.Fatalf("second pull: pulled %v, %v", pulled, err)
	}
	rep, err := r.Verify(ctx(t), VerifyOptions{})
	if err != nil || !rep.OK() || rep.PacksRead == 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// TestWrongKey: another passphrase fails clearly and writes nothing.
func TestWrongKey(t *testing.T) { s3test.Each(t, testWrongKey) }

func testWrongKey(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	before := e.objects("")
	o := e.opts
	o.Secret = []byte("wrong")
	if _, err := Open(ctx(t), o); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with a wrong key: %v, want ErrWrongKey", err)
	}
	if after := e.objects(""); len(after) != len(before) {
		t.Fatalf("objects %v after a wrong key, before %v", after, before)
	}
}

// TestWrongCredentials: a bad secret key is ErrAccessDenied.
func TestWrongCredentials(t *testing.T) { s3test.Each(t, testWrongCredentials) }

func testWrongCredentials(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	o := e.opts
	o.Store.SecretKey = "not-the-secret"
	_, err := Open(ctx(t), o)
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("open with wrong credentials: %v, want ErrAccessDenied", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("error shows the secret: %v", err)
	}
	// An access key the store does not know (RGW: 403
	// InvalidAccessKeyId; versitygw: 404 XAdminUserNotFound).
	o.Store.AccessKey = "CAIRNNOSUCHKEY"
	if _, err := Open(ctx(t), o); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("open with an unknown access key: %v, want ErrAccessDenied", err)
	}
}

// writeIncr commits an incremental point of vm: only the given blocks
// change, the rest keep their version.
func writeIncr(t *testing.T, repo *blockmap.Repo, vm, disk string, size int64, when time.Time, changes map[int64][]byte) blockmap.Point {
	t.Helper()
	s, err := repo.BeginPoint(ctx(t), vm, blockmap.PointOptions{Time: when})
	if err != nil {
		t.Fatal(err)
	}
	var areas []blockmap.Extent
	for off, b := range changes {
		areas = append(areas, blockmap.Extent{Offset: off, Length: int64(len(b))})
	}
	w, err := s.AddDisk(ctx(t), disk, size, blockmap.DiskOptions{Changed: areas})
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

// TestIncrementalReadsOnlyChanges: replicating a point whose VM's previous
// point is already on the remote reads only the blocks whose version
// changed, and the result still pulls back byte for byte.
func TestIncrementalReadsOnlyChanges(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	p1 := bigPoint(t, repo, "inc", 11)
	r := e.open()
	cd := cacheDir(t)
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cd}); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(12, 13))
	bs := int64(repo.BlockSize())
	p2 := writeIncr(t, repo, "inc", "disk-0", 24<<20, p1.Time.Add(time.Hour), map[int64][]byte{
		3 * bs: randBytes(rnd, int(bs)), 100 * bs: randBytes(rnd, int(2*bs)), 300 * bs: randBytes(rnd, int(bs))})
	st, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1, p2}, ReplicateOptions{CacheDir: cd})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("incremental: %d blocks read, %d unchanged, %d new", st.BlocksRead, st.BlocksUnchanged, st.BlocksNew)
	if st.BlocksRead != 4 || st.BlocksNew != 4 || st.BlocksUnchanged != 12<<20/bs-3 {
		t.Fatalf("incremental read %d blocks (%d unchanged, %d new), want 4 read", st.BlocksRead, st.BlocksUnchanged, st.BlocksNew)
	}
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	for _, p := range []blockmap.Point{p1, p2} {
		np, _, err := r.Pull(ctx(t), fresh, p.VM, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameLocal(t, repo, fresh, p, np)
	}
	// Without the local record (a new cache) every block is read again,
	// and nothing is uploaded twice.
	p3 := writeIncr(t, repo, "inc", "disk-0", 24<<20, p1.Time.Add(2*time.Hour), map[int64][]byte{5 * bs: randBytes(rnd, int(bs))})
	st, err = r.Replicate(ctx(t), repo, []blockmap.Point{p3}, ReplicateOptions{CacheDir: cacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	if st.BlocksUnchanged != 0 || st.BlocksNew != 1 {
		t.Fatalf("with a new cache: %d unchanged, %d new", st.BlocksUnchanged, st.BlocksNew)
	}
}

// TestIncrementalScatteredBlocks: an incremental whose changed blocks are
// scattered (single blocks, read several at once without readahead) and
// a run that crosses the 64-block batches reads exactly the changed
// blocks, interleaves them with the unchanged ones in the manifest, and
// pulls back byte for byte.
func TestIncrementalScatteredBlocks(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	p1 := bigPoint(t, repo, "scatter", 21)
	r := e.open()
	cd := cacheDir(t)
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cd}); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(22, 23))
	bs := int64(repo.BlockSize())
	changes := map[int64][]byte{}
	want := int64(0)
	for b := int64(1); b < 200; b += 2 { // 100 single blocks, in data and in the hole after it
		changes[b*bs] = randBytes(rnd, int(bs))
		want++
	}
	changes[250*bs] = randBytes(rnd, int(70*bs)) // a run longer than a batch
	want += 70
	p2 := writeIncr(t, repo, "scatter", "disk-0", 24<<20, p1.Time.Add(time.Hour), changes)
	st, err := r.Replicate(ctx(t), repo, []blockmap.Point{p2}, ReplicateOptions{CacheDir: cd})
	if err != nil {
		t.Fatal(err)
	}
	dataBlocks := 12<<20/bs + (200-12<<20/bs)/2 + 70 // p1's data plus the changes in its hole
	if st.BlocksRead != want || st.BlocksNew != want || st.BlocksRead+st.BlocksUnchanged != dataBlocks {
		t.Fatalf("incremental read %d blocks (%d new, %d unchanged), want %d read of %d", st.BlocksRead, st.BlocksNew, st.BlocksUnchanged, want, dataBlocks)
	}
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	np, _, err := r.Pull(ctx(t), fresh, p2.VM, p2.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameLocal(t, repo, fresh, p2, np)
}

// TestRunsRoundTrip: the saved replication state (runs of blocks and
// generations) decodes to what was encoded, and damaged state is refused.
func TestRunsRoundTrip(t *testing.T) {
	for _, rs := range [][]genRun{
		nil,
		{{first: 0, n: 1, gen: 1}},
		{{first: 0, n: 16, gen: 1}, {first: 16, n: 3, gen: 2}, {first: 1 << 34, n: 1, gen: 7}},
		{{first: 1<<53 - 2, n: 2, gen: 1<<32 - 1}},
	} {
		got, err := decodeRuns(encodeRuns(rs))
		if err != nil || len(got) != len(rs) {
			t.Fatalf("%v: decoded %v, %v", rs, got, err)
		}
		for i := range rs {
			if got[i] != rs[i] {
				t.Fatalf("%v: decoded %v", rs, got)
			}
			if r, ok := findRun(got, rs[i].first+rs[i].n-1); !ok || r != rs[i] {
				t.Fatalf("findRun of the last block of %v: %v %v", rs[i], r, ok)
			}
		}
	}
	if _, err := decodeRuns([]byte{0x80}); err == nil {
		t.Fatal("truncated runs decoded")
	}
	if _, err := decodeRuns([]byte{0, 0, 1}); err == nil {
		t.Fatal("an empty run decoded")
	}
	if _, ok := findRun([]genRun{{first: 4, n: 2, gen: 1}}, 3); ok {
		t.Fatal("findRun found a block before the run")
	}
}

// TestKeyCache: with Options.KeyCache the first open derives the key with
// argon2id and keeps it sealed in the file (0600); later opens take it
// from there and work; a wrong secret still fails with ErrWrongKey, and a
// damaged cache file is ignored and written again.
func TestKeyCache(t *testing.T) {
	e := newEnv(t, 0)
	path := filepath.Join(t.TempDir(), "cache", "key")
	e.opts.KeyCache = path
	repo := testutil.NewRepo(t)
	pts := twoVMs(t, repo)[:1]
	r := e.open()
	if r.keyCached {
		t.Fatal("first open took the key from an empty cache")
	}
	if _, err := r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key cache: %v %v, want a 0600 file", err, fi)
	}
	data, _ := os.ReadFile(path)
	if bytes.Contains(data, e.opts.Secret) {
		t.Fatal("the key cache holds the secret in plain")
	}
	r2 := e.open()
	if !r2.keyCached {
		t.Fatal("second open did not use the key cache")
	}
	if got, bad, err := r2.Points(ctx(t)); err != nil || len(bad) != 0 || len(got) != 1 {
		t.Fatalf("points through the cached key: %v %v %v", got, bad, err)
	}
	wrong := e.opts
	wrong.Secret = []byte("not the passphrase")
	if _, err := Open(ctx(t), wrong); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with a wrong secret and a key cache: %v, want ErrWrongKey", err)
	}
	data[len(data)-1] ^= 1
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r3 := e.open()
	if r3.keyCached {
		t.Fatal("a damaged key cache was used")
	}
	if got, _, err := r3.Points(ctx(t)); err != nil || len(got) != 1 {
		t.Fatalf("points after a damaged key cache: %v %v", got, err)
	}
	if r4 := e.open(); !r4.keyCached {
		t.Fatal("the damaged key cache was not written again")
	}
}

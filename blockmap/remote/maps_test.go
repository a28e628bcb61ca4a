package remote

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// deltaDisk is the disk of the block map tests: 96 MiB with 64 MiB of
// random data (1024 blocks of 64 KiB).
const (
	deltaDiskSize = 96 << 20
	deltaData     = 64 << 20
)

func deltaEnv(t *testing.T, eng s3test.Engine, days int) *env {
	e := newEnvOn(t, eng, days)
	// Packs of 8 MiB: the test's pack tables stay as small beside its
	// maps as a real remote's 32 MiB packs beside a big disk's.
	e.opts.PackSize = 8 << 20
	return e
}

func deltaFull(t *testing.T, repo *blockmap.Repo, vm string, seed uint64) blockmap.Point {
	rnd := rand.New(rand.NewPCG(seed, 77))
	return writePoint(t, repo, vm, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		[]diskSpec{{name: "disk-0", size: deltaDiskSize, data: map[int64][]byte{0: randBytes(rnd, deltaData)}}})
}

// deltaIncr changes n blocks of the disk, spread over it (block k*step+i),
// with random data; zero blocks are written as zeros (removed from the map).
func deltaIncr(t *testing.T, repo *blockmap.Repo, vm string, when time.Time, seed uint64, n, zero int) blockmap.Point {
	rnd := rand.New(rand.NewPCG(seed, 78))
	bs := int64(repo.BlockSize())
	ch := map[int64][]byte{}
	step := int64(deltaData) / bs / int64(n+zero)
	for i := 0; i < n+zero; i++ {
		b := int64(i)*step + int64(seed%uint64(step))
		if i < n {
			ch[b*bs] = randBytes(rnd, int(bs))
		} else {
			ch[b*bs] = make([]byte, bs)
		}
	}
	return writeIncr(t, repo, vm, "disk-0", deltaDiskSize, when, ch)
}

// sameRemote reads every point through the remote reader and pull and
// compares it with the local point.
func sameRemote(t *testing.T, r *Remote, repo *blockmap.Repo, pts ...blockmap.Point) {
	t.Helper()
	for _, p := range pts {
		for _, d := range p.Disks {
			lr, err := repo.OpenDisk(ctx(t), p, d.Name)
			if err != nil {
				t.Fatal(err)
			}
			want := readAll(t, lr, d.Size)
			we := lr.DataExtents()
			lr.Close()
			dr, err := r.OpenDisk(ctx(t), p.VM, p.ID, d.Name, 0)
			if err != nil {
				t.Fatalf("open %s %s: %v", p.VM, p.ID, err)
			}
			if !bytes.Equal(readAll(t, dr, d.Size), want) {
				t.Fatalf("point %s disk %s differs through the remote reader", p.ID, d.Name)
			}
			if ge := dr.DataExtents(); !equalExtents(ge, we) {
				t.Fatalf("point %s disk %s: remote data map %v, local %v", p.ID, d.Name, ge, we)
			}
		}
		fresh := newRepoAt(t, t.TempDir()+"/pull")
		np, _, err := r.Pull(ctx(t), fresh, p.VM, p.ID)
		if err != nil {
			t.Fatalf("pull %s: %v", p.ID, err)
		}
		sameLocal(t, repo, fresh, p, np)
	}
}

func (e *env) manifestSize(r *Remote, p blockmap.Point) int64 {
	e.t.Helper()
	n, ok := e.objects(pointsPrefix)[pointsPrefix+r.keys.manifestName(p.VM, p.ID)]
	if !ok {
		e.t.Fatalf("no manifest of %s", p.ID)
	}
	return n
}

// TestManifestDelta: a full point stores its block map as a map object;
// 1 % incrementals store only a delta on it (their manifests, listed
// through the S3 API, are under 10 % of the map); a big change writes a
// new full map; every point reads byte for byte through the reader and
// pull, in one replication run and across runs.
func TestManifestDelta(t *testing.T) { s3test.Each(t, testManifestDelta) }

func testManifestDelta(t *testing.T, eng s3test.Engine) {
	e := deltaEnv(t, eng, 0)
	repo := testutil.NewRepo(t)
	cd := cacheDir(t)
	p1 := deltaFull(t, repo, "vm", 1)
	h := time.Hour
	p2 := deltaIncr(t, repo, "vm", p1.Time.Add(h), 2, 10, 0)
	p3 := deltaIncr(t, repo, "vm", p1.Time.Add(2*h), 3, 8, 2) // 2 blocks zeroed: removed from the map
	r := e.open()
	st, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cd})
	if err != nil {
		t.Fatal(err)
	}
	if st.Maps != 1 || e.objects(mapsPrefix)[mapsPrefix+mustManifest(t, r, p1).Map.ID] != st.MapBytes {
		t.Fatalf("the full point stored %d maps (%d bytes)", st.Maps, st.MapBytes)
	}
	fullMap := st.MapBytes
	full := mustManifest(t, r, p1)
	// p2 and p3 in one run (the earlier point kept from the run), p4 in
	// a new run with a new Remote (the earlier point read back).
	st, err = r.Replicate(ctx(t), repo, []blockmap.Point{p2, p3}, ReplicateOptions{CacheDir: cd})
	if err != nil {
		t.Fatal(err)
	}
	if st.Maps != 0 {
		t.Fatalf("two 1 %% incrementals wrote %d full maps", st.Maps)
	}
	p4 := deltaIncr(t, repo, "vm", p1.Time.Add(3*h), 4, 10, 0)
	r2 := e.open()
	if st, err = r2.Replicate(ctx(t), repo, []blockmap.Point{p4}, ReplicateOptions{CacheDir: cd}); err != nil || st.Maps != 0 {
		t.Fatalf("p4: %v, %d maps", err, st.Maps)
	}
	for _, p := range []blockmap.Point{p2, p3, p4} {
		m := mustManifest(t, r2, p)
		size := e.manifestSize(r2, p)
		t.Logf("point %s: manifest %d bytes, full map %d bytes (%.1f %%), delta %d entries", p.ID, size, fullMap, 100*float64(size)/float64(fullMap), m.Disks[0].DeltaCount)
		if m.Format != manifestFormatMap || m.Map.ID != full.Map.ID || m.Disks[0].DeltaCount == 0 {
			t.Fatalf("point %s: format %d, map %+v (want %s), %d delta entries", p.ID, m.Format, m.Map, full.Map.ID, m.Disks[0].DeltaCount)
		}
		if size*10 >= fullMap {
			t.Fatalf("the 1 %% point %s has a manifest of %d bytes: not under 10 %% of the %d-byte full map", p.ID, size, fullMap)
		}
	}
	// Depth one: p4's delta is on the full map, holding p2's and p3's
	// changes too.
	if d2, d4 := mustManifest(t, r2, p2).Disks[0].DeltaCount, mustManifest(t, r2, p4).Disks[0].DeltaCount; d4 <= d2 {
		t.Fatalf("p4's delta holds %d entries, p2's %d: not cumulative on the full map", d4, d2)
	}
	// A big change (30 % of the data) writes a new full map; the next
	// small one is a delta on that.
	p5 := deltaIncr(t, repo, "vm", p1.Time.Add(4*h), 5, 310, 0)
	p6 := deltaIncr(t, repo, "vm", p1.Time.Add(5*h), 6, 10, 0)
	if st, err = r2.Replicate(ctx(t), repo, []blockmap.Point{p5, p6}, ReplicateOptions{CacheDir: cd}); err != nil || st.Maps != 1 {
		t.Fatalf("p5, p6: %v, %d maps", err, st.Maps)
	}
	m5, m6 := mustManifest(t, r2, p5), mustManifest(t, r2, p6)
	if m5.Map.ID == full.Map.ID || m5.Disks[0].DeltaCount != 0 || m6.Map.ID != m5.Map.ID || m6.Disks[0].DeltaCount == 0 {
		t.Fatalf("after a big change: p5 map %s (%d delta), p6 map %s (%d delta)", m5.Map.ID, m5.Disks[0].DeltaCount, m6.Map.ID, m6.Disks[0].DeltaCount)
	}
	if n := len(e.objects(mapsPrefix)); n != 2 {
		t.Fatalf("%d map objects, want 2", n)
	}
	sameRemote(t, r2, repo, p1, p2, p3, p4, p5, p6)
	if v, err := r2.Verify(ctx(t), VerifyOptions{}); err != nil || !v.OK() || v.MapsRead != 2 {
		t.Fatalf("verify: %v %+v", err, v)
	}
}

func mustManifest(t *testing.T, r *Remote, p blockmap.Point) *manifest {
	t.Helper()
	m, err := r.manifest(ctx(t), p.VM, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestManifestOldFormat: manifests of format 1 (each disk's full map
// inline, as cairn wrote them before map objects) still read, pull,
// verify and prune; the next point after one gets a full map object.
func TestManifestOldFormat(t *testing.T) { s3test.Each(t, testManifestOldFormat) }

func testManifestOldFormat(t *testing.T, eng s3test.Engine) {
	e := deltaEnv(t, eng, 0)
	repo := testutil.NewRepo(t)
	cd := cacheDir(t)
	p1 := deltaFull(t, repo, "vm", 11)
	p2 := deltaIncr(t, repo, "vm", p1.Time.Add(time.Hour), 12, 10, 1)
	old := e.open()
	old.inlineMaps = true
	if _, err := old.Replicate(ctx(t), repo, []blockmap.Point{p1, p2}, ReplicateOptions{CacheDir: cd}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.objects(mapsPrefix)); n != 0 {
		t.Fatalf("the old format wrote %d map objects", n)
	}
	p3 := deltaIncr(t, repo, "vm", p1.Time.Add(2*time.Hour), 13, 10, 0)
	p4 := deltaIncr(t, repo, "vm", p1.Time.Add(3*time.Hour), 14, 10, 0)
	r := e.open()
	st, err := r.Replicate(ctx(t), repo, []blockmap.Point{p3, p4}, ReplicateOptions{CacheDir: cd})
	if err != nil {
		t.Fatal(err)
	}
	if st.Maps != 1 || st.BlocksRead > 30 {
		t.Fatalf("after old manifests: %d maps written, %d blocks read", st.Maps, st.BlocksRead)
	}
	for i, p := range []blockmap.Point{p1, p2, p3, p4} {
		want := manifestFormatInline
		if i >= 2 {
			want = manifestFormatMap
		}
		if m := mustManifest(t, r, p); m.Format != want || (m.Map == nil) != (want == manifestFormatInline) {
			t.Fatalf("point %d: format %d, map %v", i+1, m.Format, m.Map)
		}
	}
	sameRemote(t, r, repo, p1, p2, p3, p4)
	if v, err := r.Verify(ctx(t), VerifyOptions{}); err != nil || !v.OK() || v.MapsRead != 1 {
		t.Fatalf("verify: %v %+v", err, v)
	}
	r.mapGrace = time.Nanosecond
	rep, err := r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 1}, false)
	if err != nil || len(rep.Deleted) != 3 || rep.MapsDeleted != 0 {
		t.Fatalf("prune: %v %+v", err, rep)
	}
	sameRemote(t, r, repo, p4)
}

// TestMapPrune: prune keeps a map object while a remaining point refers
// to it, keeps an unreferenced one younger than the grace period, and
// deletes it (every version) once the last point referring to it is gone
// and the grace period has passed.
func TestMapPrune(t *testing.T) { s3test.Each(t, testMapPrune) }

func testMapPrune(t *testing.T, eng s3test.Engine) {
	e := deltaEnv(t, eng, 0)
	repo := testutil.NewRepo(t)
	h := time.Hour
	p1 := deltaFull(t, repo, "vm", 21)
	p2 := deltaIncr(t, repo, "vm", p1.Time.Add(h), 22, 10, 0)
	p3 := deltaIncr(t, repo, "vm", p1.Time.Add(2*h), 23, 10, 0)
	p4 := deltaIncr(t, repo, "vm", p1.Time.Add(3*h), 24, 310, 0) // new full map
	p5 := deltaIncr(t, repo, "vm", p1.Time.Add(4*h), 25, 10, 0)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1, p2, p3, p4, p5}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	m1, m4 := mustManifest(t, r, p1).Map.ID, mustManifest(t, r, p4).Map.ID
	if m1 == m4 {
		t.Fatal("the big change wrote no new map")
	}
	has := func(id string) bool { _, ok := e.objects(mapsPrefix)[mapsPrefix+id]; return ok }
	r.mapGrace = time.Nanosecond
	// p1 goes; p2 and p3 still read through its map.
	rep, err := r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 4}, false)
	if err != nil || len(rep.Deleted) != 1 || rep.MapsDeleted != 0 || !has(m1) {
		t.Fatalf("prune of p1: %v %+v, map kept %v", err, rep, has(m1))
	}
	sameRemote(t, r, repo, p2, p3)
	// p2 and p3 go: the map is unreferenced, but younger than the
	// default grace period (a replication may be about to refer to it).
	r.mapGrace = 0
	rep, err = r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 2}, false)
	if err != nil || len(rep.Deleted) != 2 || rep.MapsDeleted != 0 || !has(m1) {
		t.Fatalf("prune of p2, p3: %v %+v, map kept %v", err, rep, has(m1))
	}
	// Past the grace period it goes, every version; p4's map stays.
	r.mapGrace = time.Nanosecond
	dry, err := r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 2}, true)
	if err != nil || dry.MapsDeleted != 1 || !has(m1) {
		t.Fatalf("dry run: %v %+v", err, dry)
	}
	rep, err = r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 2}, false)
	if err != nil || rep.MapsDeleted != 1 || has(m1) || !has(m4) {
		t.Fatalf("prune after the grace period: %v %+v; map %s kept %v, map %s kept %v", err, rep, m1, has(m1), m4, has(m4))
	}
	for o := range e.s3.ListObjects(ctx(t), e.bucket, minio.ListObjectsOptions{Prefix: mapsPrefix + m1, WithVersions: true}) {
		t.Fatalf("a version of the pruned map is left: %+v", o)
	}
	sameRemote(t, r, repo, p4, p5)
	if v, err := r.Verify(ctx(t), VerifyOptions{}); err != nil || !v.OK() || v.OrphanMaps != 0 {
		t.Fatalf("verify after prune: %v %+v", err, v)
	}
}

// TestMapLocked: under Object Lock a map object a point refers to cannot
// be deleted through the S3 API, extend renews it with the packs, and
// prune leaves an unreferenced map alone until its retention ends.
func TestMapLocked(t *testing.T) { s3test.Each(t, testMapLocked) }

func testMapLocked(t *testing.T, eng s3test.Engine) {
	e := deltaEnv(t, eng, 1)
	repo := testutil.NewRepo(t)
	p1 := deltaFull(t, repo, "vm", 31)
	p2 := deltaIncr(t, repo, "vm", p1.Time.Add(time.Hour), 32, 10, 0)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1, p2}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	ref := mustManifest(t, r, p2).Map
	if ref.Version == "" {
		t.Fatal("map object without a version on a bucket with Object Lock")
	}
	mode, until, err := s3test.Retention(ctx(t), e.s3, e.bucket, ref.object(), ref.Version)
	if err != nil || mode != minio.Compliance || until.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("map retention: %v %v %v", mode, until, err)
	}
	if err := e.s3.RemoveObject(ctx(t), e.bucket, ref.object(), minio.RemoveObjectOptions{VersionID: ref.Version, GovernanceBypass: true}); err == nil {
		t.Fatal("a referenced map object under retention was deleted through the S3 API")
	}
	// extend renews the map with the packs.
	o := e.opts
	o.ImmutableDays = 3
	r3, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if est, err := r3.Extend(ctx(t)); err != nil || est.Extended != est.Objects {
		t.Fatalf("extend: %+v %v", est, err)
	}
	if _, until, err := s3test.Retention(ctx(t), e.s3, e.bucket, ref.object(), ref.Version); err != nil || until.Before(time.Now().Add(71*time.Hour)) {
		t.Fatalf("map retention after extend: %v %v", until, err)
	}
	// The points are locked too: prune keeps them and the map.
	r.mapGrace = time.Nanosecond
	rep, err := r.Forget(ctx(t), []blockmap.Point{p1, p2}, false)
	if err != nil || len(rep.Locked) != 2 || rep.MapsDeleted != 0 {
		t.Fatalf("forget of locked points: %v %+v", err, rep)
	}

	// An unreferenced map under retention: a bucket with Object Lock but
	// a remote without --immutable-days, the map locked through the S3 API.
	f := deltaEnvLockedBucket(t, eng)
	q1 := deltaFull(t, repo, "other", 33)
	rf := f.open()
	if _, err := rf.Replicate(ctx(t), repo, []blockmap.Point{q1}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	qref := mustManifest(t, rf, q1).Map
	lockUntil := time.Now().Add(24 * time.Hour)
	cm := minio.Compliance
	if err := f.s3.PutObjectRetention(ctx(t), f.bucket, qref.object(), minio.PutObjectRetentionOptions{Mode: &cm, RetainUntilDate: &lockUntil, VersionID: qref.Version}); err != nil {
		t.Fatal(err)
	}
	rf.mapGrace = time.Nanosecond
	rep, err = rf.Forget(ctx(t), []blockmap.Point{q1}, false)
	if err != nil || len(rep.Deleted) != 1 || rep.MapsLocked != 1 || rep.MapsDeleted != 0 {
		t.Fatalf("forget of the map's only point: %v %+v", err, rep)
	}
	if _, err := f.s3.StatObject(ctx(t), f.bucket, qref.object(), minio.StatObjectOptions{VersionID: qref.Version}); err != nil {
		t.Fatalf("the locked map is gone: %v", err)
	}
}

// deltaEnvLockedBucket is deltaEnv's remote on a bucket created with
// Object Lock, without immutable days of its own.
func deltaEnvLockedBucket(t *testing.T, eng s3test.Engine) *env {
	e := lockedBucketEnv(t, eng)
	e.opts.PackSize = 8 << 20
	return e
}

// TestVerifyNamesMap: a damaged or deleted map object is named by verify
// with the points it leaves unreadable (and only those); the reader and
// pull fail on them naming the map, and pull commits nothing.
func TestVerifyNamesMap(t *testing.T) { s3test.Each(t, testVerifyNamesMap) }

func testVerifyNamesMap(t *testing.T, eng s3test.Engine) {
	e := deltaEnv(t, eng, 0)
	repo := testutil.NewRepo(t)
	a1 := deltaFull(t, repo, "alpha", 41)
	a2 := deltaIncr(t, repo, "alpha", a1.Time.Add(time.Hour), 42, 10, 0)
	b1 := deltaFull(t, repo, "beta", 43)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{a1, a2, b1}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	ref := mustManifest(t, r, a2).Map
	data, err := r.st.get(ctx(t), ref.object(), "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, want error) {
		t.Helper()
		rep, err := r.Verify(ctx(t), VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		named := false
		for _, b := range rep.BadObjects {
			named = named || b.Object == ref.object()
		}
		wantPts := []string{"alpha " + a1.ID, "alpha " + a2.ID}
		if rep.OK() || !named || strings.Join(rep.BadPoints, ",") != strings.Join(wantPts, ",") {
			t.Fatalf("verify of a %s map: bad objects %+v, bad points %v (want %v)", what, rep.BadObjects, rep.BadPoints, wantPts)
		}
		t.Logf("verify of a %s map: %+v", what, rep.BadObjects)
		if _, err := r.OpenDisk(ctx(t), a2.VM, a2.ID, "disk-0", 0); !errors.Is(err, want) || !strings.Contains(err.Error(), ref.object()) {
			t.Fatalf("open of a point with a %s map: %v", what, err)
		}
		fresh := newRepoAt(t, t.TempDir()+"/fresh")
		if _, _, err := r.Pull(ctx(t), fresh, a1.VM, a1.ID); !errors.Is(err, want) || !strings.Contains(err.Error(), ref.object()) {
			t.Fatalf("pull of a point with a %s map: %v", what, err)
		}
		if pts, _ := fresh.Points(ctx(t), a1.VM); len(pts) != 0 {
			t.Fatalf("a failed pull left %d points", len(pts))
		}
		sameRemote(t, r, repo, b1)
	}
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0x20
	if _, err := e.s3.PutObject(ctx(t), e.bucket, ref.object(), bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	check("damaged", ErrCorrupt)
	if err := e.s3.RemoveObject(ctx(t), e.bucket, ref.object(), minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	check("deleted", ErrNotFound)
}

// TestMapDeltaMemory: reading a point through its map and delta keeps one
// entry per data block, as a full inline map did: the delta is applied
// while the map is decoded, and the map's plaintext is not kept.
func TestMapDeltaMemory(t *testing.T) {
	const n = 1 << 18 // 16 GiB of data in 64 KiB blocks
	es := make([]blockEntry, n)
	for i := range es {
		es[i] = blockEntry{Block: int64(i) * 2, Pack: int32(i / 512), Off: uint32(i%512) * 65600, Len: 65577, Raw: 65536}
		es[i].ID[0], es[i].ID[1], es[i].ID[2] = byte(i), byte(i>>8), byte(i>>16)
	}
	npacks := n / 512
	// The delta: 1 % changed (in a new pack), 0.1 % removed, 0.1 % added.
	var delta []blockEntry
	for i := 0; i < n; i += 100 {
		e := es[i]
		e.Pack, e.ID[5] = int32(npacks), 1
		delta = append(delta, e)
		if i%1000 == 0 {
			delta = append(delta, blockEntry{Block: es[i+1].Block, Pack: -1})
			delta = append(delta, blockEntry{Block: es[i+1].Block + 1, Pack: int32(npacks), Raw: 7})
		}
	}
	want := make([]blockEntry, 0, n)
	for i, k := 0, 0; i < n; i++ {
		for k < len(delta) && delta[k].Block < es[i].Block {
			want = append(want, delta[k])
			k++
		}
		if k < len(delta) && delta[k].Block == es[i].Block {
			if delta[k].Pack >= 0 {
				want = append(want, delta[k])
			}
			k++
			continue
		}
		want = append(want, es[i])
	}
	if d := diffMap(es, want); len(d) != len(delta) {
		t.Fatalf("diffMap found %d entries, want %d", len(d), len(delta))
	}
	m := &manifest{Format: manifestFormatMap, BlockSize: 64 << 10, Packs: make([]manifestPack, npacks+1), Map: &mapRef{ID: randomID().String(), Packs: npacks}}
	m.Disks = []manifestDisk{{Name: "d0", Size: int64(n) * 2 * 64 << 10, Delta: encodeDelta(delta), DeltaCount: len(delta)}}
	pm := &pointMaps{m: m, disks: map[string]mapDisk{"d0": {Name: "d0", Size: m.Disks[0].Size, Count: n, Blocks: encodeBlocks(es)}}}
	encoded := int64(len(pm.disks["d0"].Blocks) + len(m.Disks[0].Delta))
	es = nil
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := int64(ms.HeapAlloc)
	got, err := pm.entries(&m.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	pm = nil
	runtime.GC()
	runtime.ReadMemStats(&ms)
	// The encoded map and delta were live before; counted as held
	// unless freed.
	held := int64(ms.HeapAlloc) - before + encoded
	perBlock := float64(held) / n
	t.Logf("a merged map of %d blocks holds %d MiB: %.1f bytes a block", len(got), held>>20, perBlock)
	if perBlock > 64 {
		t.Errorf("a merged map holds %.0f bytes a block, want at most 64", perBlock)
	}
	if len(got) != len(want) {
		t.Fatalf("merged %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestMapBeforeManifest: a point's map object is stored (and locked)
// before the manifest that refers to it, so no listed point lacks its
// map; a replication stopped between the two leaves an unreferenced map
// that prune leaves alone during the grace period.
func TestMapBeforeManifest(t *testing.T) {
	e := deltaEnv(t, s3test.RGW(t), 1)
	repo := testutil.NewRepo(t)
	p1 := deltaFull(t, repo, "vm", 51)
	r := e.open()
	c, cancel := context.WithCancel(ctx(t))
	checked := false
	r.beforeManifest = func(m *manifest) {
		if _, ok := e.objects(mapsPrefix)[m.Map.object()]; !ok {
			t.Errorf("manifest about to be stored before its map %s", m.Map.object())
		}
		if _, _, err := s3test.Retention(ctx(t), e.s3, e.bucket, m.Map.object(), m.Map.Version); err != nil {
			t.Errorf("map not locked before the manifest: %v", err)
		}
		if len(e.objects(pointsPrefix)) != 0 {
			t.Error("a manifest is stored already")
		}
		checked = true
		cancel() // the run stops between the map and the manifest
	}
	if _, err := r.Replicate(c, repo, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cacheDir(t)}); !errors.Is(err, context.Canceled) || !checked {
		t.Fatalf("replicate stopped before the manifest: %v (checked %v)", err, checked)
	}
	if pts, _, err := r.Points(ctx(t)); err != nil || len(pts) != 0 {
		t.Fatalf("points after a stopped run: %v %v", pts, err)
	}
	rep, err := r.Forget(ctx(t), nil, false)
	if err != nil || rep.MapsDeleted != 0 || rep.MapsLocked != 0 || len(e.objects(mapsPrefix)) != 1 {
		t.Fatalf("prune within the grace period: %v %+v", err, rep)
	}
}

// TestMapCodecDamage: truncated or altered map objects and deltas (past
// authentication only through a bug, but still) are errors, never a panic
// or a map whose blocks do not increase.
func TestMapCodecDamage(t *testing.T) {
	rnd := rand.New(rand.NewPCG(61, 62))
	var es, delta []blockEntry
	b := int64(0)
	for i := 0; i < 200; i++ {
		b += 1 + rnd.Int64N(3)
		e := blockEntry{Block: b, Pack: int32(rnd.IntN(4)), Off: rnd.Uint32(), Len: rnd.Uint32N(70000), Raw: 65536}
		e.ID = randomID()
		es = append(es, e)
		if i%10 == 0 {
			d := e
			d.Pack = 4
			delta = append(delta, d)
		} else if i%17 == 0 {
			delta = append(delta, blockEntry{Block: b, Pack: -1})
		}
	}
	plain := encodeMap(4, []mapDisk{{Name: "d0", Size: (b + 1) << 16, Count: len(es), Blocks: encodeBlocks(es)}})
	enc := encodeDelta(delta)
	if _, ds, err := decodeMap(plain); err != nil || len(ds) != 1 {
		t.Fatalf("decode: %v", err)
	}
	if d, err := decodeDelta(enc, len(delta), 5); err != nil || len(d) != len(delta) {
		t.Fatalf("decode delta: %v", err)
	}
	check := func(m, d []byte) {
		_, ds, err := decodeMap(m)
		if err != nil {
			return
		}
		dl, err := decodeDelta(d, len(delta), 5)
		if err != nil {
			return
		}
		for _, dd := range ds {
			got, err := mergeDelta(dd.Blocks, dd.Count, 4, dl)
			if err != nil {
				continue
			}
			for i := 1; i < len(got); i++ {
				if got[i].Block <= got[i-1].Block {
					t.Fatalf("merged map not increasing at %d", i)
				}
			}
		}
	}
	for n := 0; n < len(plain); n += 7 {
		check(plain[:n], enc)
	}
	for n := 0; n < len(enc); n += 3 {
		check(plain, enc[:n])
	}
	for i := 0; i < 2000; i++ {
		m := append([]byte(nil), plain...)
		m[rnd.IntN(len(m))] ^= byte(1 + rnd.IntN(255))
		d := append([]byte(nil), enc...)
		d[rnd.IntN(len(d))] ^= byte(1 + rnd.IntN(255))
		check(m, enc)
		check(plain, d)
	}
}

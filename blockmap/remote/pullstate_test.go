package remote

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
)

// TestReplicateAfterPullIsIncremental: an appliance rebuilt by a pull
// (disaster recovery) takes the remote over, backs up a new point with a
// few changed blocks and replicates it. The pulled point counts as
// replicated there (the remote has it: present), and the new point's
// replication builds on it: it reads and uploads only the changed blocks,
// not the whole disk, and `verify --remote` finds every block. A point
// pulled from another remote (a second bucket holding the same point)
// proves nothing about this one: there the new point is read whole.
func TestReplicateAfterPullIsIncremental(t *testing.T) {
	s3test.Each(t, testReplicateAfterPullIsIncremental)
}

func testReplicateAfterPullIsIncremental(t *testing.T, c s3test.Engine) {
	offsite := newEnvOn(t, c, 0)
	second := newEnvOn(t, c, 0)
	oldOpts, newOpts := offsite.opts, offsite.opts
	oldOpts.Writer = &Writer{ID: "old-id", Host: "old-host", Repo: "/srv/old"}
	newOpts.Writer = &Writer{ID: "new-id", Host: "new-host", Repo: "/srv/new"}
	open := func(o Options) *Remote {
		r, err := Open(ctx(t), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	rOld, rNew, rSecond := open(oldOpts), open(newOpts), second.open()

	// The old appliance: one point of 8 MiB of data on a 16 MiB disk,
	// replicated to both remotes.
	src := newRepoAt(t, filepath.Join(t.TempDir(), "old"))
	bs := int64(src.BlockSize())
	rnd := rand.New(rand.NewPCG(21, 22))
	const size = 16 << 20
	data := randBytes(rnd, 8<<20)
	t0 := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	p1 := writePoint(t, src, "dr", t0, []diskSpec{{name: "scsi0-0", size: size, data: map[int64][]byte{0: data}}})
	for _, r := range []*Remote{rOld, rSecond} {
		if _, err := r.Replicate(ctx(t), src, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
			t.Fatal(err)
		}
	}
	dataBlocks := int64(len(data)) / bs
	p1Packs := offsite.objects(packPrefix) // p1's alone
	// A later point of the old appliance, on the offsite remote only.
	data1b := append([]byte(nil), data...)
	for _, b := range []int64{60, 61, 62} {
		copy(data1b[b*bs:(b+1)*bs], randBytes(rnd, int(bs)))
	}
	p1b := writePoint(t, src, "dr", t0.Add(12*time.Hour), []diskSpec{{name: "scsi0-0", size: size, data: map[int64][]byte{0: data1b}}})
	if _, err := rOld.Replicate(ctx(t), src, []blockmap.Point{p1, p1b}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}

	// rebuilt pulls p1 from remote, takes remote over, backs up a new point
	// (3 blocks rewritten, incremental on the pulled one) and replicates.
	rebuild := func(t *testing.T, from *Remote, fromCache string, when time.Time, pulls ...blockmap.Point) (*blockmap.Repo, []blockmap.Point, blockmap.Point) {
		repo := newRepoAt(t, filepath.Join(t.TempDir(), "new"))
		if len(pulls) == 0 {
			pulls = []blockmap.Point{p1}
		}
		var np []blockmap.Point
		for _, p := range pulls {
			pp, did, _, err := from.PullWith(ctx(t), repo, p.VM, p.ID, PullOptions{CacheDir: fromCache})
			if err != nil || !did {
				t.Fatalf("pull %s: %v (pulled %v)", p.ID, err, did)
			}
			np = append(np, pp)
		}
		s, err := repo.BeginPoint(ctx(t), "dr", blockmap.PointOptions{Time: when})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddDisk(ctx(t), "scsi0-0", size, blockmap.DiskOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if f, why := w.Full(); f {
			t.Fatalf("the new backup is full (%s), want incremental on the pulled point", why)
		}
		for _, b := range []int64{3, 40, 100} {
			if _, err := w.WriteAt(randBytes(rnd, int(bs)), b*bs); err != nil {
				t.Fatal(err)
			}
		}
		p2, err := s.Commit(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		return repo, np, p2
	}
	// verifyClean: verify --remote finds nothing wrong, or (lost: a pack
	// of p1 was deleted) nothing wrong with p2.
	verifyClean := func(t *testing.T, r *Remote, p2 blockmap.Point, lost bool) {
		rep, err := r.Verify(ctx(t), VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range rep.BadBlocks {
			if !lost || b.Point == p2.ID {
				t.Errorf("verify --remote: bad block %+v", b)
			}
		}
		for _, p := range rep.BadPoints {
			if !lost || p == p2.VM+" "+p2.ID {
				t.Errorf("verify --remote: bad point %s", p)
			}
		}
		if !lost && len(rep.BadObjects) > 0 {
			t.Errorf("verify --remote: bad objects %v", rep.BadObjects)
		}
		if lost && len(rep.BadBlocks) == 0 {
			t.Error("verify --remote found nothing wrong after a pack was deleted")
		}
	}

	// What the rebuilt appliance's cache holds (or lost) when it
	// replicates, and what that replicate must read: the 3 changed blocks
	// when the pulled point is proven, every block when it is not, and
	// the blocks of a pack the remote lost besides the changed ones.
	for i, tc := range []struct {
		name   string
		mutate func(t *testing.T, cache string, np blockmap.Point)
		pulls  []blockmap.Point
	}{
		{"same-remote", nil, nil},
		// The newest point pulled first, then the older one (a higher
		// generation here): the new backup's blocks build on the point
		// of the highest generation (the session's base), and so does
		// its replication.
		{"pulled-newest-first", nil, []blockmap.Point{p1b, p1}},
		// Pulled by a cairn that wrote no replicate state: the replicate
		// writes it from the pull record.
		{"pulled-before-states", func(t *testing.T, cache string, np blockmap.Point) {
			if err := os.RemoveAll(filepath.Join(cache, "points")); err != nil {
				t.Fatal(err)
			}
		}, nil},
		// A state that does not name the remote manifest proves nothing.
		{"state-mismatch", func(t *testing.T, cache string, np blockmap.Point) {
			f := filepath.Join(rNew.stateDir(cache, np.VM), strconv.FormatUint(uint64(np.Gen), 10))
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("the pull wrote no replicate state: %v", err)
			}
			b2 := strings.Replace(string(b), `"source_generation":1`, `"source_generation":99`, 1)
			if b2 == string(b) {
				t.Fatalf("state %s has no source generation 1", b)
			}
			if err := os.WriteFile(f, []byte(b2), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		// A pack of the pulled point is gone from the remote: its blocks
		// are read and uploaded again, never taken from the pulled map.
		{"pack-lost", func(t *testing.T, cache string, np blockmap.Point) {
			for k := range p1Packs {
				if err := offsite.s3.RemoveObject(ctx(t), offsite.bucket, k, minio.RemoveObjectOptions{}); err != nil {
					t.Fatal(err)
				}
				return
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := cacheDir(t)
			repo, nps, p2 := rebuild(t, rNew, cache, t0.Add(time.Duration(i+1)*24*time.Hour), tc.pulls...)
			np := nps[len(nps)-1]
			if _, err := rNew.TakeOver(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if tc.mutate != nil {
				tc.mutate(t, cache, np)
			}
			st, err := rNew.Replicate(ctx(t), repo, append(nps, p2), ReplicateOptions{CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("replicate after takeover: present %d, copied %d, blocks read %d (%d bytes), unchanged %d, new %d (%d raw bytes), uploaded %d bytes",
				len(st.Present), len(st.Replicated), st.BlocksRead, st.BytesRead, st.BlocksUnchanged, st.BlocksNew, st.RawNew, st.BytesUploaded)
			if len(st.Present) != len(nps) || len(st.Replicated) != 1 {
				t.Fatalf("present %d, replicated %d; want the pulled point present and the new one copied", len(st.Present), len(st.Replicated))
			}
			if st.BlocksRead+st.BlocksUnchanged != dataBlocks {
				t.Errorf("read %d blocks and kept %d of %d", st.BlocksRead, st.BlocksUnchanged, dataBlocks)
			}
			switch tc.name {
			case "state-mismatch":
				if st.BlocksRead != dataBlocks || st.BlocksNew != 3 {
					t.Errorf("replicate on an unproven pulled point read %d blocks, uploaded %d; want all %d read, 3 uploaded", st.BlocksRead, st.BlocksNew, dataBlocks)
				}
			case "pack-lost":
				if st.BlocksRead <= 3 || st.BlocksNew != st.BlocksRead {
					t.Errorf("with a pack of the pulled point lost: read %d blocks, uploaded %d; want the lost ones read and uploaded besides the 3 changed", st.BlocksRead, st.BlocksNew)
				}
			default:
				// 3 changed blocks read and uploaded; the others taken
				// from the pulled point's remote copy.
				if st.BlocksRead != 3 || st.BytesRead > 3*bs || st.BlocksNew != 3 {
					t.Errorf("the new point's replication read %d blocks (%d bytes), uploaded %d, kept %d; want 3 read, 3 uploaded, %d kept",
						st.BlocksRead, st.BytesRead, st.BlocksNew, st.BlocksUnchanged, dataBlocks-3)
				}
				// Packs and their indexes (3 blocks), one map delta and a manifest.
				if limit := 3*(bs+64) + 64<<10; st.BytesUploaded > limit {
					t.Errorf("uploaded %d bytes for 3 changed blocks, want at most %d", st.BytesUploaded, limit)
				}
			}
			verifyClean(t, rNew, p2, tc.name == "pack-lost")
			sameOnRemote(t, rNew, repo, p2, size)
		})
	}

	// Pulled from the second bucket: the offsite remote's copy of p1 is
	// the same point, but nothing here proves it (another remote's
	// record), so the new point is read whole (and deduplicated by the
	// block cache) — and verifies.
	t.Run("other-remote", func(t *testing.T) {
		repo, nps, p2 := rebuild(t, rSecond, cacheDir(t), t0.Add(10*24*time.Hour))
		cache := cacheDir(t)
		st, err := rNew.Replicate(ctx(t), repo, append(nps, p2), ReplicateOptions{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		if st.BlocksUnchanged != 0 || st.BlocksRead != dataBlocks {
			t.Errorf("replicate after a pull from another remote: read %d blocks, kept %d unread; want all %d read", st.BlocksRead, st.BlocksUnchanged, dataBlocks)
		}
		verifyClean(t, rNew, p2, true)
		sameOnRemote(t, rNew, repo, p2, size)
	})
}

// sameRemote checks that p's first disk reads back from the remote as it
// is in repo.
func sameOnRemote(t *testing.T, r *Remote, repo *blockmap.Repo, p blockmap.Point, size int64) {
	t.Helper()
	rd, err := r.OpenDisk(ctx(t), p.VM, p.ID, "scsi0-0", 0)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := repo.OpenDisk(context.Background(), p, "scsi0-0")
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	if !bytes.Equal(readAll(t, rd, size), readAll(t, ld, size)) {
		t.Fatalf("point %s read from the remote differs from the local one", p.ID)
	}
}

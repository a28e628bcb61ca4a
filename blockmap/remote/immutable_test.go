package remote

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestImmutableRefusesUnlockedBucket: --immutable-days on a bucket made
// without Object Lock is refused.
func TestImmutableRefusesUnlockedBucket(t *testing.T) {
	s3test.Each(t, testImmutableRefusesUnlockedBucket)
}

func testImmutableRefusesUnlockedBucket(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	o := e.opts
	o.Store.Bucket = s3test.NewBucketName()
	if err := e.s3.MakeBucket(ctx(t), o.Store.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	o.ImmutableDays = 7
	if err := Init(ctx(t), o); !errors.Is(err, ErrNoObjectLock) {
		t.Fatalf("init with immutable days on an unlocked bucket: %v", err)
	}
}

// TestImmutableReplicateRefusesUnlockedBucket: a remote initialized without
// Object Lock, opened with --immutable-days (added again with it), fails
// replicate with ErrNoObjectLock before it writes anything (versitygw
// keeps a PUT it refuses: an unlocked pack was left behind).
func TestImmutableReplicateRefusesUnlockedBucket(t *testing.T) {
	s3test.Each(t, testImmutableReplicateRefusesUnlockedBucket)
}

func testImmutableReplicateRefusesUnlockedBucket(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	before := len(e.objects(""))
	e.opts.ImmutableDays = 3
	r := e.open()
	repo := testutil.NewRepo(t)
	pts := twoVMs(t, repo)
	_, err := r.Replicate(ctx(t), repo, pts[:1], ReplicateOptions{CacheDir: cacheDir(t)})
	if !errors.Is(err, ErrNoObjectLock) {
		t.Fatalf("replicate with a retention into an unlocked bucket: %v, want ErrNoObjectLock", err)
	}
	if after := len(e.objects("")); after != before {
		t.Fatalf("%d objects after the refused replicate, %d before", after, before)
	}
}

// TestImmutablePoint proves through the S3 API that a replicated point's
// objects cannot be deleted or overwritten before their retention date:
// every version refuses DELETE; an overwrite or a delete marker (all that
// the appliance's credentials can do) leaves the written version, which
// cairn still reads; Extend moves the retention of referenced objects.
func TestImmutablePoint(t *testing.T) { s3test.Each(t, testImmutablePoint) }

func testImmutablePoint(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 1)
	repo := testutil.NewRepo(t)
	p := bigPoint(t, repo, "locked", 7)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	type ver struct{ key, id string }
	var vers []ver
	for o := range e.s3.ListObjects(ctx(t), e.bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		vers = append(vers, ver{o.Key, o.VersionID})
	}
	if len(vers) < 4 {
		t.Fatalf("%d object versions", len(vers))
	}
	for _, v := range vers {
		mode, until, err := s3test.Retention(ctx(t), e.s3, e.bucket, v.key, v.id)
		if err != nil || mode != minio.Compliance || until.Before(time.Now().Add(23*time.Hour)) {
			t.Fatalf("%s: retention %v %v %v", v.key, mode, until, err)
		}
		err = e.s3.RemoveObject(ctx(t), e.bucket, v.key, minio.RemoveObjectOptions{VersionID: v.id, GovernanceBypass: true})
		if err == nil {
			t.Fatalf("version %s of %s was deleted before its retention date", v.id, v.key)
		}
		// Shortening the retention is refused too.
		short := time.Now().Add(time.Minute)
		mode2 := minio.Compliance
		if err := e.s3.PutObjectRetention(ctx(t), e.bucket, v.key, minio.PutObjectRetentionOptions{Mode: &mode2, RetainUntilDate: &short, VersionID: v.id}); err == nil {
			t.Fatalf("retention of %s was shortened", v.key)
		}
	}
	// An attacker with the credentials overwrites every object with junk
	// and then deletes every name (delete markers).
	for _, v := range vers {
		junk := bytes.Repeat([]byte{0xEE}, 100)
		if _, err := e.s3.PutObject(ctx(t), e.bucket, v.key, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vers {
		if err := e.s3.RemoveObject(ctx(t), e.bucket, v.key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vers {
		if _, err := e.s3.StatObject(ctx(t), e.bucket, v.key, minio.StatObjectOptions{VersionID: v.id}); err != nil {
			t.Fatalf("written version of %s gone: %v", v.key, err)
		}
	}
	// cairn still opens the remote, lists, verifies and pulls the point.
	r2 := e.open()
	pts, bad, err := r2.Points(ctx(t))
	if err != nil || len(pts) != 1 || len(bad) != 0 {
		t.Fatalf("points after the attack: %v %v %v", pts, bad, err)
	}
	rep, err := r2.Verify(ctx(t), VerifyOptions{})
	if err != nil || len(rep.BadBlocks) != 0 {
		t.Fatalf("verify after the attack: %v %+v", err, rep)
	}
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	np, _, err := r2.Pull(ctx(t), fresh, p.VM, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameLocal(t, repo, fresh, p, np)
	// Extend: with 3 days asked, the 1-day objects are renewed.
	o := e.opts
	o.ImmutableDays = 3
	r3, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	est, err := r3.Extend(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("extend: %+v", est)
	if est.Extended == 0 || est.Extended != est.Objects {
		t.Fatalf("extend renewed %d of %d objects", est.Extended, est.Objects)
	}
	m, err := r3.manifest(ctx(t), p.VM, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, until, err := s3test.Retention(ctx(t), e.s3, e.bucket, packPrefix+m.Packs[0].ID, m.Packs[0].Version)
	if err != nil || until.Before(time.Now().Add(71*time.Hour)) {
		t.Fatalf("pack retention after extend: %v %v", until, err)
	}
	// A second extend has nothing to do.
	if est, err = r3.Extend(ctx(t)); err != nil || est.Extended != 0 {
		t.Fatalf("second extend: %+v %v", est, err)
	}
}

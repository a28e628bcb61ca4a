package remote

import (
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/internal/s3test"
)

// TestRetentionFromBucketDefault: a remote on a bucket whose Object Lock
// carries a default retention, initialized and opened without immutable
// days, reports that default (CheckRetention without the key, Stats and
// BucketRetention with it); Days prefers cairn's own retention over the
// bucket's; a bucket without Object Lock reports none.
func TestRetentionFromBucketDefault(t *testing.T) { s3test.Each(t, testRetentionFromBucketDefault) }

func testRetentionFromBucketDefault(t *testing.T, eng s3test.Engine) {
	cl := eng.Client(t)
	bucket := s3test.NewBucketName()
	if err := cl.MakeBucket(ctx(t), bucket, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	mode, validity, unit := minio.Governance, uint(2), minio.Days
	if err := cl.SetObjectLockConfig(ctx(t), bucket, &mode, &validity, &unit); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Store:  StoreOptions{Endpoint: eng.Endpoint, Bucket: bucket, AccessKey: eng.AccessKey, SecretKey: eng.SecretKey, Timeout: 20 * time.Second},
		Secret: []byte("correct horse battery staple"),
	}
	ret, err := CheckRetention(ctx(t), o.Store)
	if err != nil {
		t.Fatal(err)
	}
	if !ret.ObjectLock || ret.BucketDays != 2 || ret.BucketMode != "GOVERNANCE" || ret.ConfigDays != 0 {
		t.Fatalf("CheckRetention of an empty locked bucket: %+v", ret)
	}
	if d, src := ret.Days(0); d != 2 || src != RetentionBucketDflt {
		t.Errorf("Days(0) = %d %q, want the bucket's 2", d, src)
	}
	if d, src := ret.Days(5); d != 5 || src != RetentionRemote {
		t.Errorf("Days(5) = %d %q, want the registered 5", d, src)
	}
	if err := Init(ctx(t), o); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := r.Stats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.ImmutableDays != 0 || st.Bucket == nil || st.Bucket.BucketDays != 2 || st.Bucket.BucketMode != "GOVERNANCE" {
		t.Fatalf("stats: immutable %d, bucket %+v; want 0 and the bucket's 2 days", st.ImmutableDays, st.Bucket)
	}

	e := newEnvOn(t, eng, 0) // a plain bucket
	ret, err = CheckRetention(ctx(t), e.opts.Store)
	if err != nil || ret.ObjectLock || ret.BucketDays != 0 || ret.ConfigDays != 0 {
		t.Fatalf("CheckRetention of a plain bucket: %+v %v", ret, err)
	}
	if d, src := ret.Days(0); d != 0 || src != RetentionNone {
		t.Errorf("plain bucket: Days(0) = %d %q", d, src)
	}
}

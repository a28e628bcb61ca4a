package s3test_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/internal/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// TestRetention: on every engine, Retention reads the COMPLIANCE mode and
// date of a version that is no longer current (overwritten, then hidden
// by a delete marker) and follows an extension.
func TestRetention(t *testing.T) {
	s3test.Each(t, func(t *testing.T, e s3test.Engine) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cl := e.Client(t)
		b := s3test.NewBucketName()
		if err := cl.MakeBucket(ctx, b, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
			t.Fatal(err)
		}
		until := time.Now().Add(24 * time.Hour).Truncate(time.Second).UTC()
		data := []byte("locked")
		info, err := cl.PutObject(ctx, b, "o", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{Mode: minio.Compliance, RetainUntilDate: until})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.PutObject(ctx, b, "o", bytes.NewReader([]byte("junk")), 4, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cl.RemoveObject(ctx, b, "o", minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		mode, got, err := s3test.Retention(ctx, cl, b, "o", info.VersionID)
		if err != nil || mode != minio.Compliance || !got.Equal(until) {
			t.Fatalf("retention %q %v %v, want COMPLIANCE %v", mode, got, err, until)
		}
		later := until.Add(48 * time.Hour)
		m := minio.Compliance
		if err := cl.PutObjectRetention(ctx, b, "o", minio.PutObjectRetentionOptions{Mode: &m, RetainUntilDate: &later, VersionID: info.VersionID}); err != nil {
			t.Fatal(err)
		}
		if _, got, err = s3test.Retention(ctx, cl, b, "o", info.VersionID); err != nil || !got.Equal(later) {
			t.Fatalf("retention after extension %v %v, want %v", got, err, later)
		}
	})
}

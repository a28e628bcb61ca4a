package rgwtest_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnbackup/cairn/internal/rgwtest"
)

func TestMain(m *testing.M) { os.Exit(rgwtest.Main(m)) }

// TestClusterServesS3 starts the shared cluster and checks a signed PUT/GET
// round trip and that Object Lock COMPLIANCE refuses a delete.
func TestClusterServesS3(t *testing.T) {
	c := rgwtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := minio.New(c.Endpoint[len("http://"):], &minio.Options{Creds: credentials.NewStaticV4(c.AccessKey, c.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	b := rgwtest.NewBucketName()
	if err := cl.MakeBucket(ctx, b, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("cairn"), 1000)
	until := time.Now().Add(24 * time.Hour)
	info, err := cl.PutObject(ctx, b, "o", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		Mode: minio.Compliance, RetainUntilDate: until})
	if err != nil {
		t.Fatal(err)
	}
	o, err := cl.GetObject(ctx, b, "o", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GET returned %d bytes, err %v", len(got), err)
	}
	err = cl.RemoveObject(ctx, b, "o", minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true})
	if err == nil {
		t.Fatal("a COMPLIANCE-retained version was deleted")
	}
	if _, err := cl.StatObject(ctx, b, "o", minio.StatObjectOptions{VersionID: info.VersionID}); err != nil {
		t.Fatalf("retained version gone: %v", err)
	}
	// radosgw comes back after a kill.
	c.KillRGW()
	if _, err := cl.StatObject(ctx, b, "o", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat succeeded with radosgw killed")
	}
	if err := c.StartRGW(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.StatObject(ctx, b, "o", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("stat after restart: %v", err)
	}
}

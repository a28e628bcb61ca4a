package versitytest_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnbackup/cairn/internal/versitytest"
)

func TestMain(m *testing.M) { os.Exit(versitytest.Main(m)) }

func client(t *testing.T, g *versitytest.Gateway, secret string) *minio.Client {
	cl, err := minio.New(strings.TrimPrefix(g.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(g.AccessKey, secret, ""), BucketLookup: minio.BucketLookupPath, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestGatewayServesS3 starts the shared gateway and checks a signed
// PUT/GET round trip, that a wrong secret is refused, that Object Lock
// COMPLIANCE refuses a delete of the version, and that the gateway comes
// back after a kill with its data.
func TestGatewayServesS3(t *testing.T) {
	g := versitytest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := client(t, g, g.SecretKey)
	b := versitytest.NewBucketName()
	if err := cl.MakeBucket(ctx, b, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, g, "wrong").BucketExists(ctx, b); err == nil {
		t.Fatal("a wrong secret was accepted")
	}
	data := bytes.Repeat([]byte("cairn"), 1000)
	info, err := cl.PutObject(ctx, b, "o", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		Mode: minio.Compliance, RetainUntilDate: time.Now().Add(24 * time.Hour)})
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
	if err := cl.RemoveObject(ctx, b, "o", minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true}); err == nil {
		t.Fatal("a COMPLIANCE-retained version was deleted")
	}
	g.Kill()
	if _, err := cl.StatObject(ctx, b, "o", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat succeeded with versitygw killed")
	}
	if err := g.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.StatObject(ctx, b, "o", minio.StatObjectOptions{VersionID: info.VersionID}); err != nil {
		t.Fatalf("stat after restart: %v", err)
	}
}

// TestStopLeavesNoProcess: a gateway of its own stops with its process
// gone.
func TestStopLeavesNoProcess(t *testing.T) {
	versitytest.Shared(t) // skips (or fails under CI) without versitygw
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := versitytest.Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pid := g.Pid()
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		t.Fatalf("gateway pid %d not running", pid)
	}
	g.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("gateway pid %d still runs after Stop", pid)
	}
}

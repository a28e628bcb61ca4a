package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnbackup/cairn/internal/rgwtest"
	"github.com/cairnbackup/cairn/internal/versitytest"
)

// Engine names, also the names of Each's subtests.
const (
	NameRGW     = "rgw"
	NameVersity = "versitygw"
)

// Engine is one running S3 object store.
type Engine struct {
	Name      string
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	// Kill kills the store's S3 server with SIGKILL (mid-request);
	// Restart starts it again on the same endpoint and data and waits
	// until it answers.
	Kill    func()
	Restart func(context.Context) error
}

// RGW returns the test binary's shared Ceph RGW.
func RGW(t testing.TB) Engine {
	t.Helper()
	c := rgwtest.Shared(t)
	return Engine{Name: NameRGW, Endpoint: c.Endpoint, AccessKey: c.AccessKey, SecretKey: c.SecretKey,
		Kill: c.KillRGW, Restart: c.StartRGW}
}

// Versity returns the test binary's shared versitygw.
func Versity(t testing.TB) Engine {
	t.Helper()
	g := versitytest.Shared(t)
	return Engine{Name: NameVersity, Endpoint: g.Endpoint, AccessKey: g.AccessKey, SecretKey: g.SecretKey,
		Kill: g.Kill, Restart: g.Restart}
}

// engines are the engines Each runs, in order.
var engines = []struct {
	name  string
	start func(testing.TB) Engine
}{{NameRGW, RGW}, {NameVersity, Versity}}

// Each runs fn as a subtest per engine, named by the engine.
func Each(t *testing.T, fn func(t *testing.T, e Engine)) {
	t.Helper()
	for _, en := range engines {
		t.Run(en.name, func(t *testing.T) { fn(t, en.start(t)) })
	}
}

// Main runs the tests of a binary and then stops every shared engine:
// func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	rgwtest.StopShared()
	versitytest.StopShared()
	return code
}

// Client returns a plain S3 client of the engine (path-style requests, as
// cairn makes them), for tests that look at the bucket behind cairn's back.
func (e Engine) Client(t testing.TB) *minio.Client {
	t.Helper()
	cl, err := minio.New(strings.TrimPrefix(e.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(e.AccessKey, e.SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// NewBucketName returns a bucket name no other test uses.
func NewBucketName() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "cairn-" + hex.EncodeToString(b)
}

// Retention reads an object version's Object Lock mode and retain-until
// date through the S3 API (GET ?retention). It decodes the answer itself:
// minio-go's GetObjectRetention refuses versitygw's, whose XML root is
// ObjectLockRetention (AWS and RGW: Retention). An error is the store's
// refusal, or a version without retention.
func Retention(ctx context.Context, cl *minio.Client, bucket, key, version string) (minio.RetentionMode, time.Time, error) {
	q := url.Values{"retention": {""}}
	if version != "" {
		q.Set("versionId", version)
	}
	u, err := cl.Presign(ctx, http.MethodGet, bucket, key, time.Minute, q)
	if err != nil {
		return "", time.Time{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", time.Time{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", time.Time{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", time.Time{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", time.Time{}, fmt.Errorf("%s: GET ?retention: HTTP %d: %s", key, resp.StatusCode, body)
	}
	var r struct {
		Mode            string
		RetainUntilDate string
	}
	if err := xml.Unmarshal(body, &r); err != nil {
		return "", time.Time{}, fmt.Errorf("%s: GET ?retention: %w", key, err)
	}
	until, err := time.Parse(time.RFC3339Nano, r.RetainUntilDate)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%s: retain-until date %q: %w", key, r.RetainUntilDate, err)
	}
	return minio.RetentionMode(r.Mode), until, nil
}

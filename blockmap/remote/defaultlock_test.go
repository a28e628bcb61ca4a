package remote

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// putRecorder is a real reverse proxy in front of a store that records
// the Content-MD5 header of every object PUT passing through it.
type putRecorder struct {
	mu   sync.Mutex
	puts map[string]string // object path → Content-MD5 of its last PUT ("" when none)
	n    int
}

func newPutRecorder(t *testing.T, endpoint string) (*putRecorder, string) {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rec := &putRecorder{puts: map[string]string{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	// The request keeps its Host header (signed by the client as the
	// proxy's address), so the store checks the signature it was given.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An object PUT (not ?retention, ?legal-hold and the like).
		if r.Method == http.MethodPut && r.URL.RawQuery == "" {
			rec.mu.Lock()
			rec.puts[r.URL.Path] = r.Header.Get("Content-Md5")
			rec.n++
			rec.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

// TestPutContentMD5OnDefaultLockedBucket: a remote registered without
// immutable days of its own on a bucket whose Object Lock has a default
// retention sends a Content-MD5 with every PUT (S3 refuses a PUT without
// one, or an x-amz-checksum-*, to such a bucket even when the request
// sets no retention), and the objects get the bucket's retention.
func TestPutContentMD5OnDefaultLockedBucket(t *testing.T) {
	s3test.Each(t, testPutContentMD5OnDefaultLockedBucket)
}

func testPutContentMD5OnDefaultLockedBucket(t *testing.T, eng s3test.Engine) {
	cl := eng.Client(t)
	// Does the store itself enforce S3's rule? (Logged: RGW 16 and
	// versitygw accept such a PUT; AWS refuses it.)
	payload := []byte("no checksum")
	if _, err := (minio.Core{Client: cl}).PutObject(ctx(t), defaultLockedBucket(t, cl), "probe", bytes.NewReader(payload), int64(len(payload)), "", "",
		minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
		t.Logf("%s refuses a PUT without Content-MD5 to a bucket with a default retention: %v", eng.Name, err)
	} else {
		t.Logf("%s accepts a PUT without Content-MD5 to a bucket with a default retention (AWS refuses it)", eng.Name)
	}
	b := defaultLockedBucket(t, cl)
	rec, proxied := newPutRecorder(t, eng.Endpoint)
	via := eng
	via.Endpoint = proxied
	e := envIn(t, via, cl, b, 0)
	repo := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(5, 6))
	p := writePoint(t, repo, "alpha", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		[]diskSpec{{name: "disk-0", size: 8 << 20, data: map[int64][]byte{0: randBytes(rnd, 3<<20)}}})
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.n < 4 { // config, pack, index, manifest at least
		t.Fatalf("only %d PUTs went through the proxy: %v", rec.n, rec.puts)
	}
	for obj, md5 := range rec.puts {
		if md5 == "" {
			t.Errorf("PUT %s had no Content-MD5", obj)
		}
	}
	sameRemote(t, r, repo, p)
	// RGW gives the bucket's default retention to every PUT; versitygw
	// (1.x) gives it to none.
	m, until, err := s3test.Retention(ctx(t), cl, b, configName, "")
	switch {
	case eng.Name == s3test.NameRGW && (err != nil || m != minio.Governance || until.Before(time.Now())):
		t.Fatalf("the config has retention %v until %v (%v), want the bucket's default", m, until, err)
	case eng.Name != s3test.NameRGW:
		t.Logf("%s: the config's retention: %v until %v (%v)", eng.Name, m, until, err)
	}
}

// defaultLockedBucket creates a bucket with Object Lock and a default
// retention of one day (GOVERNANCE).
func defaultLockedBucket(t *testing.T, cl *minio.Client) string {
	t.Helper()
	b := s3test.NewBucketName()
	if err := cl.MakeBucket(ctx(t), b, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	mode, validity, unit := minio.Governance, uint(1), minio.Days
	if err := cl.SetObjectLockConfig(ctx(t), b, &mode, &validity, &unit); err != nil {
		t.Fatal(err)
	}
	return b
}

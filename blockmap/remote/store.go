package remote

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // S3 requires Content-MD5 with Object Lock
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/ratelimit"
)

// Sentinel errors; the CLI adds advice.
var (
	ErrWrongKey           = errors.New("wrong key: the key file or passphrase does not open this remote")
	ErrFormat             = errors.New("unsupported or damaged remote format")
	ErrNotInitialized     = errors.New("remote not initialized")
	ErrAlreadyInitialized = errors.New("remote already initialized")
	ErrNotEmpty           = errors.New("bucket not empty")
	ErrAccessDenied       = errors.New("access denied by the object store")
	ErrNoBucket           = errors.New("no such bucket")
	ErrNoObjectLock       = errors.New("bucket has no Object Lock")
	ErrNotFound           = errors.New("not found on the remote")
	ErrCorrupt            = errors.New("remote object fails authentication")
	ErrLocked             = errors.New("object is locked")
	ErrNoRetention        = errors.New("the remote keeps no Object Lock retention")
)

// BlockSizeError means a remote point's block size differs from the
// repository's it is pulled into (a repository has one block size).
type BlockSizeError struct{ Remote, Local int }

func (e *BlockSizeError) Error() string {
	return fmt.Sprintf("the remote point has %d-byte blocks, the repository %d", e.Remote, e.Local)
}

// Is makes a *BlockSizeError match blockmap.ErrInvalid.
func (e *BlockSizeError) Is(target error) bool { return target == blockmap.ErrInvalid }

// Object name prefixes.
const (
	prefix       = "cairn/"
	configName   = prefix + "config"
	packPrefix   = prefix + "packs/"
	indexPrefix  = prefix + "index/"
	pointsPrefix = prefix + "points/"
)

// StoreOptions say how to reach a bucket.
type StoreOptions struct {
	// Endpoint is the store's URL: https://host[:port] or http://host[:port].
	Endpoint  string
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
	// Insecure skips TLS certificate verification (self-signed test stores).
	Insecure bool
	// Timeout bounds the wait for the store's answer to one request
	// (0: two minutes); a stalled store fails the operation instead of
	// hanging it.
	Timeout time.Duration
	// MinRate is the slowest transfer, in bytes per second, a request may
	// make before it counts as stalled (0: 256 KiB/s).
	MinRate int64
	// Limiter, when set, caps the bandwidth of every transfer (limit.go).
	Limiter *ratelimit.Limiter
}

// String never shows the secret key.
func (o StoreOptions) String() string {
	return fmt.Sprintf("s3 %s bucket %s", o.Endpoint, o.Bucket)
}

// store is a bucket on an S3-compatible object store.
type store struct {
	cl      *minio.Client
	bucket  string
	timeout time.Duration
	minRate int64
	hc      *http.Client // presigned requests minio-go cannot decode (store_compat.go)
	lt      *limitTransport
	// lock is what this store learnt of the bucket's Object Lock (one of
	// lockUnknown, lockOff, lockOn): put sends a Content-MD5 to a bucket
	// with Object Lock (lockedPut).
	lock atomic.Int32
}

// The states of store.lock.
const (
	lockUnknown int32 = iota
	lockOff
	lockOn
)

func newStore(o StoreOptions) (*store, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT]", o.Endpoint)
	}
	if o.Bucket == "" {
		return nil, errors.New("no bucket given")
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.Insecure}, //nolint:gosec // only with --insecure
	}
	lt := &limitTransport{base: tr}
	lt.lim.Store(o.Limiter)
	cl, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure:    u.Scheme == "https",
		Region:    o.Region,
		Transport: lt,
		// Path-style requests work on every store (virtual-host style
		// needs DNS for each bucket name).
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   3,
	})
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", o.Endpoint, err)
	}
	minRate := o.MinRate
	if minRate <= 0 {
		minRate = 256 << 10
	}
	return &store{cl: cl, bucket: o.Bucket, timeout: timeout, minRate: minRate, hc: &http.Client{Transport: lt}, lt: lt}, nil
}

// s3err turns the store's answers into the package's sentinels.
func (s *store) s3err(op, name string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	what := op + " " + name
	switch resp.Code {
	// versitygw answers an unknown access key with 404 XAdminUserNotFound
	// (RGW and AWS: 403 InvalidAccessKeyId).
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "XAdminUserNotFound":
		if strings.Contains(resp.Message, "retention") || strings.Contains(resp.Message, "lock") || strings.Contains(resp.Message, "WORM") {
			return fmt.Errorf("%s: %w: %s", what, ErrLocked, resp.Message)
		}
		return fmt.Errorf("%s: %w (%s: %s)", what, ErrAccessDenied, resp.Code, resp.Message)
	case "NoSuchBucket":
		return fmt.Errorf("%s: bucket %s: %w", what, s.bucket, ErrNoBucket)
	case "NoSuchKey", "NoSuchVersion":
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// opContext bounds one request that moves n bytes: the answer timeout
// plus the time n bytes take at the slowest acceptable rate. The
// transport's timeout alone does not catch a store that stops reading a
// request body larger than the socket buffers. Waits for a bandwidth
// limit do not count (limit.go).
func (s *store) opContext(ctx context.Context, n int64) (context.Context, context.CancelFunc) {
	d := s.timeout + time.Duration(n)*time.Second/time.Duration(s.minRate)
	if c, cancel, ok := s.limitedContext(ctx, d); ok {
		return c, cancel
	}
	return context.WithTimeout(ctx, d)
}

type putOptions struct {
	retainUntil time.Time // zero: no retention
}

// put writes one object in one request and returns its version id ("" on
// an unversioned bucket).
func (s *store) put(ctx context.Context, name string, data []byte, po putOptions) (string, error) {
	o := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		// The payload hash is given: one signed request, not minio-go's
		// chunked streaming signature (a SHA-256 and a signature per
		// 64 KiB chunk, copied into a frame: a quarter of replicate's CPU).
		DisableContentSha256: true,
	}
	// The payload is checked by the store on arrival: its SHA-256 is
	// signed (over https TLS guards it too). S3 requires a Content-MD5
	// with an Object Lock retention, and with every PUT to a bucket whose
	// Object Lock has a default retention (even one that sets none); then
	// that MD5 is the check and the SHA-256 is skipped.
	var md5b64, sha string
	if !po.retainUntil.IsZero() {
		o.Mode = minio.Compliance
		o.RetainUntilDate = po.retainUntil.UTC()
	}
	if !po.retainUntil.IsZero() || s.lockedPut(ctx) {
		sum := md5.Sum(data)
		md5b64 = base64.StdEncoding.EncodeToString(sum[:])
	} else {
		sum := sha256.Sum256(data)
		sha = hex.EncodeToString(sum[:])
	}
	ctx, cancel := s.opContext(ctx, int64(len(data)))
	defer cancel()
	info, err := minio.Core{Client: s.cl}.PutObject(ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)), md5b64, sha, o)
	if err != nil {
		return "", s.s3err("put", name, err)
	}
	v := info.VersionID
	if v == "null" {
		v = ""
	}
	return v, nil
}

// get reads an object (or a range of it when length > 0) of one version
// ("" for the latest).
func (s *store) get(ctx context.Context, name, version string, off, length int64) ([]byte, error) {
	return s.getInto(ctx, name, version, off, length, nil)
}

// getInto is get reading a range (length > 0) into buf when it is large
// enough, so that readers reuse their buffers instead of growing a new
// one per request (io.ReadAll doubles its way up, copying as it goes, and
// every fresh buffer costs page faults and clearing).
func (s *store) getInto(ctx context.Context, name, version string, off, length int64, buf []byte) ([]byte, error) {
	o := minio.GetObjectOptions{VersionID: version}
	if length > 0 {
		if err := o.SetRange(off, off+length-1); err != nil {
			return nil, err
		}
	}
	ctx, cancel := s.opContext(ctx, max(length, 32<<20))
	defer cancel()
	obj, err := s.cl.GetObject(ctx, s.bucket, name, o)
	if err != nil {
		return nil, s.s3err("get", name, err)
	}
	defer obj.Close()
	var data []byte
	if length > 0 {
		if int64(cap(buf)) < length {
			buf = make([]byte, length)
		}
		data = buf[:length]
		n, err := io.ReadFull(obj, data)
		switch {
		case err == io.ErrUnexpectedEOF || err == io.EOF:
			data = data[:n] // shorter than asked: reported below
		case err != nil:
			return nil, s.s3err("get", name, err)
		}
	} else if data, err = io.ReadAll(obj); err != nil {
		return nil, s.s3err("get", name, err)
	}
	if c, ok := ctx.Value(downloadCounterKey{}).(*atomic.Int64); ok {
		c.Add(int64(len(data)))
	}
	if length > 0 && int64(len(data)) != length {
		return nil, fmt.Errorf("get %s: %w: %d bytes at %d, want %d (object shorter than its index says)", name, ErrCorrupt, len(data), off, length)
	}
	return data, nil
}

// downloadCounterKey carries an *atomic.Int64 that getInto adds the bytes
// of every object body it reads to (PullWith's BytesDownloaded).
type downloadCounterKey struct{}

func withDownloadCounter(ctx context.Context, c *atomic.Int64) context.Context {
	return context.WithValue(ctx, downloadCounterKey{}, c)
}

type objectInfo struct {
	Name     string
	Size     int64
	Version  string
	Modified time.Time
}

// list lists the objects under prefix (latest versions; with hidden also
// names whose latest version is a delete marker, at their newest data
// version).
func (s *store) list(ctx context.Context, pfx string, hidden bool) ([]objectInfo, error) {
	var out []objectInfo
	seen := map[string]bool{}
	for o := range s.cl.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: pfx, Recursive: true, WithVersions: hidden}) {
		if o.Err != nil {
			return nil, s.s3err("list", pfx, o.Err)
		}
		if o.IsDeleteMarker || seen[o.Key] {
			continue
		}
		seen[o.Key] = true
		v := o.VersionID
		if v == "null" {
			v = ""
		}
		out = append(out, objectInfo{Name: o.Key, Size: o.Size, Version: v, Modified: o.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// versions lists the data versions of one object, newest first.
func (s *store) versions(ctx context.Context, name string) ([]string, error) {
	var out []string
	for o := range s.cl.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: name, Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			return nil, s.s3err("list versions", name, o.Err)
		}
		if o.Key != name || o.IsDeleteMarker {
			continue
		}
		out = append(out, o.VersionID)
	}
	return out, nil
}

// oldestVersions maps each name under pfx to its oldest data version.
func (s *store) oldestVersions(ctx context.Context, pfx string) (map[string]string, error) {
	out := map[string]string{}
	for o := range s.cl.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: pfx, Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			return nil, s.s3err("list versions", pfx, o.Err)
		}
		if o.IsDeleteMarker {
			continue
		}
		v := o.VersionID
		if v == "null" {
			v = ""
		}
		out[o.Key] = v // versions come newest first: the last one stays
	}
	return out, nil
}

// objectVersion is one version of an object, or a delete marker.
type objectVersion struct {
	id     string
	marker bool
	size   int64
}

// allVersions lists every version and delete marker of one object ("" is
// the only version of an unversioned object).
func (s *store) allVersions(ctx context.Context, name string) ([]objectVersion, error) {
	var out []objectVersion
	for o := range s.cl.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: name, Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			return nil, s.s3err("list versions", name, o.Err)
		}
		if o.Key != name {
			continue
		}
		v := o.VersionID
		if v == "null" {
			v = ""
		}
		out = append(out, objectVersion{id: v, marker: o.IsDeleteMarker, size: o.Size})
	}
	return out, nil
}

func (s *store) remove(ctx context.Context, name, version string) error {
	return s.s3err("delete", name, s.cl.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{VersionID: version}))
}

// objectLock reports whether the bucket has Object Lock enabled, and
// keeps the answer for put.
func (s *store) objectLock(ctx context.Context) (bool, error) {
	enabled, _, _, _, err := s.cl.GetObjectLockConfig(ctx, s.bucket)
	if err != nil {
		resp := minio.ToErrorResponse(err)
		if resp.Code == "ObjectLockConfigurationNotFoundError" || resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket" {
			s.lock.Store(lockOff)
			return false, nil
		}
		return false, s.s3err("get object lock configuration", s.bucket, err)
	}
	on := enabled == "Enabled"
	if on {
		s.lock.Store(lockOn)
	} else {
		s.lock.Store(lockOff)
	}
	return on, nil
}

// lockedPut tells whether a PUT needs a Content-MD5 because the bucket
// has Object Lock: S3 refuses a PUT without one (or an x-amz-checksum-*)
// to a bucket whose Object Lock has a default retention. The bucket's
// configuration is asked once per store (objectLock). When it cannot be
// read (a policy without s3:GetBucketObjectLockConfiguration, a store
// down) the MD5 is sent anyway: every store accepts it.
func (s *store) lockedPut(ctx context.Context) bool {
	switch s.lock.Load() {
	case lockOn:
		return true
	case lockOff:
		return false
	}
	on, err := s.objectLock(ctx)
	if errors.Is(err, ErrAccessDenied) {
		s.lock.Store(lockOn)
	}
	return on || err != nil
}

// retention reads an object version's retain-until date (zero: none).
func (s *store) retention(ctx context.Context, name, version string) (time.Time, error) {
	_, until, err := s.cl.GetObjectRetention(ctx, s.bucket, name, version)
	if err != nil && minio.ToErrorResponse(err).Code == "" {
		// Not an S3 error: an answer minio-go cannot decode (versitygw
		// names the XML root ObjectLockRetention, not Retention).
		return s.retentionRaw(ctx, name, version, err)
	}
	if err != nil {
		resp := minio.ToErrorResponse(err)
		if resp.Code == "NoSuchObjectLockConfiguration" || resp.Code == "ObjectLockConfigurationNotFoundError" {
			return time.Time{}, nil
		}
		return time.Time{}, s.s3err("get retention", name, err)
	}
	if until == nil {
		return time.Time{}, nil
	}
	return *until, nil
}

func (s *store) setRetention(ctx context.Context, name, version string, until time.Time) error {
	mode := minio.Compliance
	until = until.UTC()
	return s.s3err("put retention", name, s.cl.PutObjectRetention(ctx, s.bucket, name, minio.PutObjectRetentionOptions{
		Mode: &mode, RetainUntilDate: &until, VersionID: version}))
}

func makeBucketOptions(region string, lock bool) minio.MakeBucketOptions {
	return minio.MakeBucketOptions{Region: region, ObjectLocking: lock}
}

package remote

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// env is one test's bucket on a shared S3 engine.
type env struct {
	t      *testing.T
	c      s3test.Engine
	opts   Options
	s3     *minio.Client
	bucket string
}

// newEnv is a bucket on the shared Ceph RGW; newEnvOn one on any engine
// (tests that must hold on every engine run under s3test.Each).
func newEnv(t *testing.T, immutableDays int) *env {
	t.Helper()
	return newEnvOn(t, s3test.RGW(t), immutableDays)
}

func newEnvOn(t *testing.T, c s3test.Engine, immutableDays int) *env {
	t.Helper()
	return envIn(t, c, c.Client(t), s3test.NewBucketName(), immutableDays)
}

// envIn initializes a remote in bucket b (made by the test, or by Init
// when missing).
func envIn(t *testing.T, c s3test.Engine, cl *minio.Client, b string, immutableDays int) *env {
	t.Helper()
	e := &env{t: t, c: c, bucket: b, s3: cl, opts: Options{
		Store:         StoreOptions{Endpoint: c.Endpoint, Bucket: b, AccessKey: c.AccessKey, SecretKey: c.SecretKey, Timeout: 20 * time.Second},
		Secret:        []byte("correct horse battery staple"),
		ImmutableDays: immutableDays,
		PackSize:      1 << 20, // small packs: several per test
	}}
	if err := Init(ctx(t), e.opts); err != nil {
		t.Fatal(err)
	}
	return e
}

// lockedBucketEnv is a remote without immutable days of its own on a
// bucket created with Object Lock.
func lockedBucketEnv(t *testing.T, c s3test.Engine) *env {
	t.Helper()
	b := s3test.NewBucketName()
	cl := c.Client(t)
	if err := cl.MakeBucket(ctx(t), b, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	return envIn(t, c, cl, b, 0)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

func (e *env) open() *Remote {
	e.t.Helper()
	r, err := Open(ctx(e.t), e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

// objects lists the bucket's objects (latest versions) with their sizes.
func (e *env) objects(prefix string) map[string]int64 {
	out := map[string]int64{}
	for o := range e.s3.ListObjects(context.Background(), e.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			e.t.Fatal(o.Err)
		}
		out[o.Key] = o.Size
	}
	return out
}

func (e *env) storedBytes() int64 {
	var n int64
	for _, s := range e.objects("") {
		n += s
	}
	return n
}

// diskSpec builds a disk: each region is random, compressible text or zeros.
type diskSpec struct {
	name string
	size int64
	data map[int64][]byte // offset → bytes
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func textBytes(n int) []byte {
	return bytes.Repeat([]byte("cairn keeps every recovery point as plain files. "), n/49+1)[:n]
}

// writePoint commits a point of vm with the given disks (full).
func writePoint(t *testing.T, repo *blockmap.Repo, vm string, when time.Time, disks []diskSpec) blockmap.Point {
	t.Helper()
	s, err := repo.BeginPoint(context.Background(), vm, blockmap.PointOptions{Time: when, Meta: []byte(`{"vm_name":"` + vm + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		w, err := s.AddDisk(context.Background(), d.name, d.size, blockmap.DiskOptions{Full: true, Meta: []byte(`{"label":"` + d.name + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		for off, b := range d.data {
			if _, err := w.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := s.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newRepoAt(t *testing.T, dir string) *blockmap.Repo {
	t.Helper()
	if err := blockmap.Init(context.Background(), dir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := blockmap.Open(context.Background(), dir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

var _ = testutil.InCI

// readAll reads a whole disk through any ReaderAt.
func readAll(t *testing.T, r io.ReaderAt, size int64) []byte {
	t.Helper()
	b := make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// sameDisk compares a local and a remote/pulled disk: bytes and data map.
func sameLocal(t *testing.T, a, b *blockmap.Repo, pa, pb blockmap.Point) {
	t.Helper()
	if len(pa.Disks) != len(pb.Disks) {
		t.Fatalf("%s %s: %d disks, pulled %d", pa.VM, pa.ID, len(pa.Disks), len(pb.Disks))
	}
	for i, d := range pa.Disks {
		if pb.Disks[i].Name != d.Name || pb.Disks[i].Size != d.Size {
			t.Fatalf("disk %d: %s/%d vs %s/%d", i, d.Name, d.Size, pb.Disks[i].Name, pb.Disks[i].Size)
		}
		ra, err := a.OpenDisk(context.Background(), pa, d.Name)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.OpenDisk(context.Background(), pb, d.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, ra, d.Size), readAll(t, rb, d.Size)) {
			t.Fatalf("%s %s disk %s differs after pull", pa.VM, pa.ID, d.Name)
		}
		if ea, eb := ra.DataExtents(), rb.DataExtents(); !equalExtents(ea, eb) {
			t.Fatalf("%s %s disk %s: data map %v, pulled %v", pa.VM, pa.ID, d.Name, ea, eb)
		}
		ra.Close()
		rb.Close()
	}
}

func equalExtents(a, b []blockmap.Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func cacheDir(t *testing.T) string { return filepath.Join(t.TempDir(), "cache") }

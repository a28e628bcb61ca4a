package remote

import (
	"bytes"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestStats: what Stats counts equals what the S3 API lists (packs and
// the sum of their sizes, every object's bytes) and what was replicated
// (points per VM, their times, the data bytes of every disk of every
// point); a pack that no manifest refers to is counted as unreferenced.
func TestStats(t *testing.T) { s3test.Each(t, testStats) }

func testStats(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	repo := testutil.NewRepo(t)
	pts := twoVMs(t, repo)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	check := func(orphans int, orphanBytes int64) *Stats {
		t.Helper()
		st, err := r.Stats(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var packs, maps int
		var packBytes, all int64
		for name, size := range e.objects("") {
			all += size
			if strings.HasPrefix(name, packPrefix) {
				packs++
				packBytes += size
			}
			if strings.HasPrefix(name, mapsPrefix) {
				maps++
			}
		}
		if st.Packs != packs || st.PackBytes != packBytes || st.StoredBytes != all || st.Maps != maps || maps == 0 {
			t.Fatalf("stats: %d packs, %d pack bytes, %d stored, %d maps; the store lists %d, %d, %d, %d", st.Packs, st.PackBytes, st.StoredBytes, st.Maps, packs, packBytes, all, maps)
		}
		if st.UnreferencedPacks != orphans || st.UnreferencedBytes != orphanBytes {
			t.Fatalf("stats: %d unreferenced packs (%d bytes), want %d (%d)", st.UnreferencedPacks, st.UnreferencedBytes, orphans, orphanBytes)
		}
		return st
	}
	st := check(0, 0)
	want := map[string]*VMStats{}
	var logical int64
	for _, p := range pts {
		v := want[p.VM]
		if v == nil {
			v = &VMStats{VM: p.VM, Oldest: p.Time, Newest: p.Time}
			want[p.VM] = v
		}
		v.Points++
		if p.Time.Before(v.Oldest) {
			v.Oldest = p.Time
		}
		if p.Time.After(v.Newest) {
			v.Newest = p.Time
		}
		for _, d := range p.Disks {
			lr, err := repo.OpenDisk(ctx(t), p, d.Name)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range lr.DataExtents() {
				v.LogicalBytes += x.Length
				logical += x.Length
			}
			lr.Close()
		}
	}
	if st.Points != len(pts) || len(st.VMs) != len(want) || st.LogicalBytes != logical {
		t.Fatalf("stats: %d points, %d VMs, %d logical bytes; want %d, %d, %d", st.Points, len(st.VMs), st.LogicalBytes, len(pts), len(want), logical)
	}
	for _, v := range st.VMs {
		w := want[v.VM]
		if w == nil || v.Points != w.Points || v.LogicalBytes != w.LogicalBytes || !v.Oldest.Equal(w.Oldest) || !v.Newest.Equal(w.Newest) {
			t.Fatalf("stats of %s: %+v, want %+v", v.VM, v, w)
		}
	}
	if st.Ratio <= 1 || st.Ratio != float64(logical)/float64(st.PackBytes) {
		t.Fatalf("ratio %.3f of %d logical bytes in %d", st.Ratio, logical, st.PackBytes)
	}
	if st.Requests != 1+1+len(pts)+st.Maps+1 {
		t.Fatalf("stats made %d requests, want %d (two lists, one GET per manifest and per map, the bucket's Object Lock configuration)", st.Requests, 3+len(pts)+st.Maps)
	}
	if st.Bucket == nil || st.Bucket.BucketDays != 0 {
		t.Fatalf("stats of a bucket without Object Lock: bucket %+v", st.Bucket)
	}
	t.Logf("%d points, %d packs (%d bytes), %d logical bytes: %.2fx, %d requests", st.Points, st.Packs, st.PackBytes, st.LogicalBytes, st.Ratio, st.Requests)
	// A pack no manifest refers to.
	orphan := packPrefix + randomID().String()
	if _, err := e.s3.PutObject(ctx(t), e.bucket, orphan, bytes.NewReader(make([]byte, 1234)), 1234, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	check(1, 1234)
}

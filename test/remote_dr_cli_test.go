package test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/internal/s3test"
)

// TestRemotePullLatestFirst is the disaster recovery an administrator does
// first: pull the latest point (to restore now), then the history. The
// history gets higher generations than the latest point; latest, the
// mount's latest link and retention must still mean the newest point by
// time (latest named an old point, and prune --keep-last 1 deleted the
// newest). Every pulled point keeps its id and bytes.
func TestRemotePullLatestFirst(t *testing.T) {
	f := newRemoteFixtureOn(t, s3test.Versity(t))
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(dir, "web.img")
	makeImage(t, img, 16<<20)
	for i := range 3 {
		writeRandom(t, img, int64(i)<<20, 512<<10, uint64(40+i))
		mustCairn(t, "--repo", repo, "import", "--vm", "web", "--disk", "d0", img)
	}
	pts := listPoints(t, repo, "web")
	want := map[string]string{}
	for _, p := range pts {
		want[p.ID] = exportSHA(t, repo, "web", p.ID, "d0")
	}
	newest := pts[len(pts)-1].ID
	f.add(t, repo, "offsite")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")

	rebuilt := filepath.Join(dir, "rebuilt")
	mustCairn(t, "--repo", rebuilt, "init")
	f.add(t, rebuilt, "offsite")
	if out := mustCairn(t, "--repo", rebuilt, "pull", "--remote", "offsite", "--vm", "web", "--point", "latest"); !strings.Contains(out, "pulled web "+newest) {
		t.Fatalf("pull latest said:\n%s", out)
	}
	mustCairn(t, "--repo", rebuilt, "pull", "--remote", "offsite")
	got := listPoints(t, rebuilt, "web")
	if len(got) != len(pts) {
		t.Fatalf("rebuilt repository has %d points, want %d", len(got), len(pts))
	}
	for _, p := range got {
		if sha, ok := want[p.ID]; !ok || exportSHA(t, rebuilt, "web", p.ID, "d0") != sha {
			t.Fatalf("pulled point %s (generation %d) is not the original point of that id", p.ID, p.Gen)
		}
	}
	if exportSHA(t, rebuilt, "web", "latest", "d0") != want[newest] {
		t.Fatal("latest of the rebuilt repository is not the newest point")
	}
	out := mustCairn(t, "--repo", rebuilt, "prune", "--vm", "web", "--keep-last", "1", "--dry-run")
	if strings.Contains(out, newest) || strings.Count(out, "would delete web") != len(pts)-1 {
		t.Fatalf("prune --keep-last 1 would not keep only the newest point %s:\n%s", newest, out)
	}
}

// TestRemoteImmutableOnUnlockedBucketCLI: a remote added with
// --immutable-days over a bucket initialized without Object Lock fails
// replicate with the Object Lock advice, not "run cairn replicate again".
func TestRemoteImmutableOnUnlockedBucketCLI(t *testing.T) {
	f := newRemoteFixtureOn(t, s3test.Versity(t))
	_, repo := repoWithOnePoint(t, 1<<20, 3)
	f.add(t, repo, "plain")
	mustCairn(t, "--repo", repo, "remote", "init", "plain")
	before := f.objectCount(t)
	f.add(t, repo, "locked", "--immutable-days", "3")
	res := runCairn(t, nil, "--repo", repo, "replicate", "--remote", "locked")
	if res.code == 0 || !strings.Contains(res.stderr, "Object Lock") || strings.Contains(res.stderr, "again to resume") {
		t.Fatalf("replicate with --immutable-days into an unlocked bucket: exit %d:\n%s", res.code, res.stderr)
	}
	if after := f.objectCount(t); after != before {
		t.Fatalf("%d objects after the refused replicate, %d before", after, before)
	}
}

// TestRemoteRetentionFromBucket: a new machine that adds an immutable
// remote without --immutable-days (the bucket's config carries the
// retention) still renews retentions when it replicates; it never did, so
// the old packs its new points refer to lost their lock on time.
func TestRemoteRetentionFromBucket(t *testing.T) {
	f := newRemoteFixtureOn(t, s3test.Versity(t))
	_, repo := repoWithOnePoint(t, 1<<20, 5)
	f.add(t, repo, "offsite", "--immutable-days", "3")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")
	_, repo2 := repoWithOnePoint(t, 1<<20, 6)
	f.add(t, repo2, "offsite")
	mustCairn(t, "--repo", repo2, "remote", "takeover", "offsite") // the new machine replaces the old one
	out := mustCairn(t, "--repo", repo2, "replicate", "--remote", "offsite")
	if !strings.Contains(out, "retention: ") || !strings.Contains(out, "to 3 days") {
		t.Fatalf("replicate from a machine that added the remote without --immutable-days did not renew retentions:\n%s", out)
	}
}

// TestRemoteDamagedPointPullAndExport: a point whose pack was altered
// behind cairn's back fails its pull alone (the other points are pulled,
// the exit status says which one failed; it stopped the whole pull and
// advised running it again), and export --remote of it leaves no file
// (it left a partial image); a good export is private (0600, was 0644).
func TestRemoteDamagedPointPullAndExport(t *testing.T) {
	f := newRemoteFixtureOn(t, s3test.Versity(t))
	dir, repo := repoWithOnePoint(t, 2<<20, 7) // VM a, the older point
	f.add(t, repo, "off")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
	packsOfA := map[string]bool{}
	for o := range f.s3.ListObjects(context.Background(), f.bucket, minio.ListObjectsOptions{Prefix: "cairn/packs/", Recursive: true}) {
		packsOfA[o.Key] = true
	}
	img := filepath.Join(dir, "b.img")
	makeImage(t, img, 8<<20)
	writeRandom(t, img, 0, 2<<20, 8)
	mustCairn(t, "--repo", repo, "import", "--vm", "b", "--disk", "d0", img)
	mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
	for key := range packsOfA {
		obj, err := f.s3.GetObject(context.Background(), f.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 1
		if _, err := f.s3.PutObject(context.Background(), f.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rebuilt := filepath.Join(dir, "rebuilt")
	mustCairn(t, "--repo", rebuilt, "init")
	f.add(t, rebuilt, "off")
	res := runCairn(t, nil, "--repo", rebuilt, "pull", "--remote", "off")
	if res.code == 0 || !strings.Contains(res.stderr, "FAILED a ") || !strings.Contains(res.stderr, "1 point not pulled, the remote copy is damaged") || !strings.Contains(res.stdout, "pulled b ") {
		t.Fatalf("pull with a damaged point: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if pts := listPoints(t, rebuilt, "b"); len(pts) != 1 || exportSHA(t, rebuilt, "b", "latest", "d0") != exportSHA(t, repo, "b", "latest", "d0") {
		t.Fatalf("the undamaged point of b was not pulled whole: %v", pts)
	}
	// (Not onto dir/a.img, the source image of VM a: a failed export now
	// leaves a file at its output's name as it was; it removed it.)
	out := filepath.Join(dir, "a.out")
	if res := runCairn(t, nil, "--repo", rebuilt, "export", "--remote", "off", "--vm", "a", "--disk", "d0", out); res.code == 0 {
		t.Fatal("export --remote of a damaged point succeeded")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("export --remote of a damaged point left %s: %v", out, err)
	}
	if left := partialsUnder(t, dir); len(left) > 0 {
		t.Fatalf("export --remote of a damaged point left %v", left)
	}
	good := filepath.Join(dir, "b.out")
	mustCairn(t, "--repo", rebuilt, "export", "--remote", "off", "--vm", "b", "--disk", "d0", good)
	if fi, err := os.Stat(good); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export --remote wrote %s with mode %v (%v), want 0600", good, fi.Mode().Perm(), err)
	}
}

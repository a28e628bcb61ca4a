package test

import (
	"context"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/internal/s3test"
)

// TestRemoteListRetentionCLI: a remote added without --immutable-days on
// a bucket whose Object Lock has a default retention (a new machine doing
// disaster recovery adds it that way) is not listed as 0 immutable days:
// remote list says unknown until remote list --check (or remote stats)
// asks the bucket, then the bucket's default; remote stats says the
// default applies. A remote whose bucket's cairn config carries a
// retention shows that one.
func TestRemoteListRetentionCLI(t *testing.T) { s3test.Each(t, testRemoteListRetentionCLI) }

func testRemoteListRetentionCLI(t *testing.T, eng s3test.Engine) {
	f := newRemoteFixtureOn(t, eng)
	_, repo := repoWithOnePoint(t, 1<<20, 11)
	bg := context.Background()
	if err := f.s3.MakeBucket(bg, f.bucket, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	mode, validity, unit := minio.Governance, uint(1), minio.Days
	if err := f.s3.SetObjectLockConfig(bg, f.bucket, &mode, &validity, &unit); err != nil {
		t.Fatal(err)
	}
	f.add(t, repo, "offsite")
	row := func(out, name string) string {
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, name+" ") {
				return line
			}
		}
		t.Fatalf("remote list has no row %s:\n%s", name, out)
		return ""
	}
	out := mustCairn(t, "--repo", repo, "remote", "list")
	if r := row(out, "offsite"); !strings.Contains(r, "unknown") || !strings.Contains(out, "cairn remote list --check") {
		t.Errorf("remote list before a check:\n%s", out)
	}
	out = mustCairn(t, "--repo", repo, "remote", "list", "--check")
	if r := row(out, "offsite"); !strings.Contains(r, "1 (bucket default)") || strings.Contains(out, "unknown") {
		t.Errorf("remote list --check:\n%s", out)
	}
	out = mustCairn(t, "--repo", repo, "remote", "list")
	if r := row(out, "offsite"); !strings.Contains(r, "1 (bucket default)") {
		t.Errorf("remote list after a check:\n%s", out)
	}
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	out = mustCairn(t, "--repo", repo, "remote", "stats", "offsite")
	if !strings.Contains(out, "the bucket's default Object Lock retention (GOVERNANCE, 1 day) applies") {
		t.Errorf("remote stats of a bucket with a default retention:\n%s", out)
	}

	// A bucket cairn initialized with --immutable-days, added here without.
	f.bucket = s3test.NewBucketName()
	f.add(t, repo, "cfg", "--immutable-days", "2")
	mustCairn(t, "--repo", repo, "remote", "init", "cfg")
	mustCairn(t, "--repo", repo, "remote", "remove", "cfg")
	f.add(t, repo, "cfg")
	out = mustCairn(t, "--repo", repo, "remote", "list", "--check")
	if r := row(out, "cfg"); !strings.Contains(r, "2 (remote config)") {
		t.Errorf("remote list --check of a remote initialized with a retention:\n%s", out)
	}
	out = mustCairn(t, "--repo", repo, "remote", "stats", "cfg")
	if !strings.Contains(out, "COMPLIANCE retention of 2 days") {
		t.Errorf("remote stats of a remote initialized with a retention:\n%s", out)
	}
}

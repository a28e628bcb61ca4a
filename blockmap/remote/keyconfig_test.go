package remote

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// configVersions lists the data versions of cairn/config through the S3 API.
func (e *env) configVersions() []string {
	e.t.Helper()
	var out []string
	for o := range e.s3.ListObjects(ctx(e.t), e.bucket, minio.ListObjectsOptions{Prefix: configName, WithVersions: true}) {
		if o.Err != nil {
			e.t.Fatal(o.Err)
		}
		if o.Key == configName && !o.IsDeleteMarker {
			out = append(out, o.VersionID)
		}
	}
	return out
}

// rekeyed replicates two points, opens the remote with a key cache and
// changes its key to newSecret; it returns the points and the report.
func rekeyed(t *testing.T, e *env, repo *blockmap.Repo, newSecret []byte) ([]blockmap.Point, *RekeyReport) {
	return rekeyedAfter(t, e, repo, newSecret, nil)
}

// rekeyedAfter is rekeyed calling before (when set) right before Rekey.
func rekeyedAfter(t *testing.T, e *env, repo *blockmap.Repo, newSecret []byte, before func()) ([]blockmap.Point, *RekeyReport) {
	t.Helper()
	pts := twoVMs(t, repo)[:2]
	e.opts.KeyCache = filepath.Join(t.TempDir(), "key")
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	if again := e.open(); !again.keyCached {
		t.Fatal("the key cache was not written")
	}
	if before != nil {
		before()
	}
	rep, err := r.Rekey(ctx(t), newSecret)
	if err != nil {
		t.Fatalf("rekey: %v", err)
	}
	return pts, rep
}

// readsSame opens the remote with o and checks that every point reads
// back equal to the local one.
func readsSame(t *testing.T, o Options, repo *blockmap.Repo, pts []blockmap.Point) {
	t.Helper()
	r, err := Open(ctx(t), o)
	if err != nil {
		t.Fatalf("open with the new key: %v", err)
	}
	defer r.Close()
	rpts, bad, err := r.Points(ctx(t))
	if err != nil || len(bad) != 0 || len(rpts) != len(pts) {
		t.Fatalf("points with the new key: %d %v %v", len(rpts), bad, err)
	}
	for _, p := range pts {
		for _, d := range []string{"disk-0", "disk-1"} {
			dr, err := r.OpenDisk(ctx(t), p.VM, p.ID, d, 0)
			if err != nil {
				t.Fatal(err)
			}
			lr, err := repo.OpenDisk(ctx(t), p, d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readAll(t, dr, dr.Size()), readAll(t, lr, lr.Size())) {
				t.Fatalf("%s %s %s: differs after the rekey", p.VM, p.ID, d)
			}
			lr.Close()
			dr.Close()
		}
	}
}

// TestRekey: on a bucket without versioning and on a versioned one
// without Object Lock, Rekey replaces the config so that the old secret
// (with or without its key cache) fails with ErrWrongKey, the new one
// opens the remote and reads every point byte for byte; the bucket keeps
// one config version and no temporary object.
func TestRekey(t *testing.T) { s3test.Each(t, testRekey) }

func testRekey(t *testing.T, eng s3test.Engine) {
	for _, versioned := range []bool{false, true} {
		name := "unversioned"
		if versioned {
			name = "versioned"
		}
		t.Run(name, func(t *testing.T) {
			var e *env
			if versioned {
				e = newVersionedEnv(t, eng)
			} else {
				e = newEnvOn(t, eng, 0)
			}
			repo := testutil.NewRepo(t)
			newSecret := []byte("a brand new key file's bytes....")
			pts, rep := rekeyed(t, e, repo, newSecret)
			if rep.Versioned != versioned || rep.OldDeleted != btoi(versioned) || len(rep.OldRetained) != 0 {
				t.Fatalf("rekey report %+v", rep)
			}
			old := e.opts
			if _, err := Open(ctx(t), old); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("open with the old key and its key cache after the rekey: %v, want ErrWrongKey", err)
			}
			old.KeyCache = ""
			if _, err := Open(ctx(t), old); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("open with the old key after the rekey: %v, want ErrWrongKey", err)
			}
			o := e.opts
			o.Secret, o.KeyCache = newSecret, ""
			readsSame(t, o, repo, pts)
			if vs := e.configVersions(); len(vs) != 1 {
				t.Fatalf("config versions after the rekey: %v, want 1", vs)
			}
			if _, ok := e.objects("")[rekeyTemp]; ok {
				t.Fatalf("%s left behind", rekeyTemp)
			}
			// Back to the first key: the new key opens, then no more.
			r2, err := Open(ctx(t), o)
			if err != nil {
				t.Fatal(err)
			}
			defer r2.Close()
			if _, err := r2.Rekey(ctx(t), e.opts.Secret); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ctx(t), o); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("open with the second key after rekeying back: %v", err)
			}
			readsSame(t, old, repo, pts)
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// newVersionedEnv is a bucket with versioning on and no Object Lock.
func newVersionedEnv(t *testing.T, eng s3test.Engine) *env {
	t.Helper()
	b := s3test.NewBucketName()
	cl := eng.Client(t)
	if err := cl.MakeBucket(ctx(t), b, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cl.EnableVersioning(ctx(t), b); err != nil {
		t.Fatal(err)
	}
	return envIn(t, eng, cl, b, 0)
}

// TestRekeyObjectLock: under Object Lock the old config version cannot be
// deleted before its retention date (proved through the S3 API): Rekey
// reports it with its date, the old secret still unwraps the master key
// from that version (what docs/remote.md warns about), but Open refuses
// the old secret with ErrWrongKey and ErrKeyChanged; the new secret opens
// and reads every point; a version put over the config by someone else
// does not hide the new one; extension renews the new version.
func TestRekeyObjectLock(t *testing.T) { s3test.Each(t, testRekeyObjectLock) }

func testRekeyObjectLock(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 1)
	repo := testutil.NewRepo(t)
	oldVersions := e.configVersions()
	if len(oldVersions) != 1 {
		t.Fatalf("config versions after init: %v", oldVersions)
	}
	newSecret := []byte("passphrase of the new administrator")
	pts, rep := rekeyed(t, e, repo, newSecret)
	if !rep.Versioned || rep.OldDeleted != 0 || len(rep.OldRetained) != 1 || rep.OldRetained[0].Version != oldVersions[0] ||
		rep.OldRetained[0].Until.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("rekey report %+v, want the old version %s retained for a day", rep, oldVersions[0])
	}
	if err := e.s3.RemoveObject(ctx(t), e.bucket, configName, minio.RemoveObjectOptions{VersionID: oldVersions[0]}); err == nil {
		t.Fatal("the old config version was deleted under its retention")
	}
	vs := e.configVersions()
	if len(vs) != 2 || vs[1] != oldVersions[0] || vs[0] != rep.Version {
		t.Fatalf("config versions %v, want the new %s and the old %s", vs, rep.Version, oldVersions[0])
	}
	// The old version still holds the master key wrapped with the old secret.
	obj, err := e.s3.GetObject(ctx(t), e.bucket, configName, minio.GetObjectOptions{VersionID: oldVersions[0]})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unwrapMaster(cfg.KDF, e.opts.Secret, cfg.Key); err != nil {
		t.Fatalf("the old version does not open with the old key: %v", err)
	}
	old := e.opts
	for _, kc := range []string{old.KeyCache, ""} {
		old.KeyCache = kc
		_, err := Open(ctx(t), old)
		if !errors.Is(err, ErrWrongKey) || !errors.Is(err, ErrKeyChanged) {
			t.Fatalf("open with the old key (key cache %q): %v, want ErrWrongKey and ErrKeyChanged", kc, err)
		}
	}
	o := e.opts
	o.Secret, o.KeyCache = newSecret, ""
	readsSame(t, o, repo, pts)
	// Someone holding the credentials puts a config over it: the new key
	// still opens (from the version cairn wrote), the old one still not.
	if _, err := e.s3.PutObject(ctx(t), e.bucket, configName, bytes.NewReader([]byte(`{"format":1}`)), 12,
		minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	readsSame(t, o, repo, pts)
	if _, err := Open(ctx(t), old); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("open with the old key after an overwrite: %v, want ErrKeyChanged", err)
	}
	r, err := Open(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cur, sealed, older, err := r.currentConfig(ctx(t))
	if err != nil || !sealed || cur != rep.Version || len(older) != 1 || older[0].id != oldVersions[0] {
		t.Fatalf("current config %s (sealed %v, older %v, %v), want %s", cur, sealed, older, err, rep.Version)
	}
}

// TestRekeyOldConfigPruned: on an Object Lock bucket, an old config
// version whose retention has not passed stays after Rekey (the store
// refuses its deletion) and prune deletes it once the date has passed;
// the new key still opens the remote and the old one still does not.
func TestRekeyOldConfigPruned(t *testing.T) { s3test.Each(t, testRekeyOldConfigPruned) }

func testRekeyOldConfigPruned(t *testing.T, eng s3test.Engine) {
	// A rekey slower than the retention (a loaded machine) lets the old
	// version go before the rekey tries to delete it: then the test runs
	// again on a new bucket with a longer retention.
	for _, keep := range []time.Duration{12 * time.Second, 60 * time.Second} {
		if rekeyOldConfigPruned(t, eng, keep) {
			return
		}
		t.Logf("the rekey took longer than the old config's retention of %v; again with a longer one", keep)
	}
	t.Fatal("the rekey took longer than the old config's retention of 60 s")
}

// rekeyOldConfigPruned runs the test with the old config retained for
// keep; false when the rekey outlasted that.
func rekeyOldConfigPruned(t *testing.T, eng s3test.Engine, keep time.Duration) bool {
	e := lockedBucketEnv(t, eng)
	b, cl := e.bucket, e.s3
	// Right before the rekey the first config gets a retention of a few
	// seconds (cairn's own retentions are whole days): long enough for the
	// rekey and a prune on a loaded machine (argon2id takes up to 2 s).
	old := e.configVersions()
	var until time.Time
	retain := func() {
		until = time.Now().Add(keep).UTC()
		mode := minio.Compliance
		if err := cl.PutObjectRetention(ctx(t), b, configName, minio.PutObjectRetentionOptions{Mode: &mode, RetainUntilDate: &until, VersionID: old[0]}); err != nil {
			t.Fatal(err)
		}
	}
	repo := testutil.NewRepo(t)
	newSecret := []byte("the next key, long enough.......")
	pts, rep := rekeyedAfter(t, e, repo, newSecret, retain)
	if time.Now().After(until) {
		return false
	}
	if len(rep.OldRetained) != 1 || rep.OldDeleted != 0 {
		t.Fatalf("rekey report %+v, want the old version retained", rep)
	}
	o := e.opts
	o.Secret, o.KeyCache = newSecret, ""
	r, err := Open(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pr, err := r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 5}, false)
	if err != nil || (pr.ConfigsDeleted != 0 && time.Now().Before(until)) {
		t.Fatalf("prune under the old config's retention: %v %+v", err, pr)
	}
	if vs := e.configVersions(); len(vs) != 2 {
		t.Fatalf("config versions %v, want 2 while retained", vs)
	}
	if pr.ConfigsDeleted == 0 { // else the retention passed during that prune
		time.Sleep(time.Until(rep.OldRetained[0].Until.Add(1500 * time.Millisecond)))
		pr, err = r.Prune(ctx(t), "", blockmap.Policy{KeepLast: 5}, false)
		if err != nil || pr.ConfigsDeleted != 1 || len(pr.Deleted) != 0 {
			t.Fatalf("prune after the old config's retention: %v %+v", err, pr)
		}
	}
	if vs := e.configVersions(); len(vs) != 1 || vs[0] != rep.Version {
		t.Fatalf("config versions %v, want only the new %s", vs, rep.Version)
	}
	old2 := e.opts
	old2.KeyCache = ""
	if _, err := Open(ctx(t), old2); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with the old key: %v", err)
	}
	readsSame(t, o, repo, pts)
	return true
}

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// remoteFixture is a bucket on a shared S3 engine with the files cairn needs.
type remoteFixture struct {
	c      s3test.Engine
	bucket string
	creds  string
	pass   string
	s3     *minio.Client
}

// newRemoteFixture is a bucket on the shared Ceph RGW; newRemoteFixtureOn
// one on any engine (tests that must hold on every engine run under
// s3test.Each).
func newRemoteFixture(t *testing.T) *remoteFixture {
	t.Helper()
	return newRemoteFixtureOn(t, s3test.RGW(t))
}

func newRemoteFixtureOn(t *testing.T, c s3test.Engine) *remoteFixture {
	t.Helper()
	dir := t.TempDir()
	f := &remoteFixture{c: c, bucket: s3test.NewBucketName(), creds: filepath.Join(dir, "creds"), pass: filepath.Join(dir, "pass")}
	if err := os.WriteFile(f.creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", c.AccessKey, c.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.pass, []byte("a long offsite passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.s3 = c.Client(t)
	return f
}

// add registers the fixture's bucket as remote name of repo.
func (f *remoteFixture) add(t *testing.T, repo, name string, extra ...string) {
	t.Helper()
	args := append([]string{"--repo", repo, "remote", "add", name, "--endpoint", f.c.Endpoint, "--bucket", f.bucket,
		"--credentials", f.creds, "--passphrase-file", f.pass, "--pack-size", "1048576"}, extra...)
	mustCairn(t, args...)
}

func (f *remoteFixture) objectCount(t *testing.T) int {
	n := 0
	for o := range f.s3.ListObjects(context.Background(), f.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	return n
}

func remotePoints(t *testing.T, repo, name string) []blockmap.Point {
	t.Helper()
	var out struct {
		Points []blockmap.Point `json:"points"`
	}
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "points", "--remote", name, "--json")), &out); err != nil {
		t.Fatal(err)
	}
	return out.Points
}

// TestRemoteDisasterRecovery: several VMs and generations are replicated
// through the CLI; every remote point exported with --remote equals the
// local export; then the local repository is deleted, a new one pulls
// everything from the remote alone, verifies, and exports the same bytes.
func TestRemoteDisasterRecovery(t *testing.T) { s3test.Each(t, testRemoteDisasterRecovery) }

func testRemoteDisasterRecovery(t *testing.T, eng s3test.Engine) {
	f := newRemoteFixtureOn(t, eng)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	imgs := map[string]string{}
	for i, vm := range []string{"web", "db"} {
		img := filepath.Join(dir, vm+".img")
		makeImage(t, img, 32<<20)
		writeRandom(t, img, 0, 6<<20, uint64(10+i))
		writeRandom(t, img, 20<<20, 1<<20, uint64(20+i))
		mustCairn(t, "--repo", repo, "import", "--vm", vm, "--disk", "d0", img)
		writeRandom(t, img, 2<<20, 256<<10, uint64(30+i))
		mustCairn(t, "--repo", repo, "import", "--vm", vm, "--disk", "d0", img)
		imgs[vm] = img
	}
	f.add(t, repo, "offsite")
	cfg := filepath.Join(repo, "remotes", "offsite.json")
	fi, err := os.Stat(cfg)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("remote config %s: %v %v", cfg, fi.Mode(), err)
	}
	if data, _ := os.ReadFile(cfg); strings.Contains(string(data), f.c.SecretKey) || strings.Contains(string(data), "passphrase\n") {
		t.Fatalf("remote config holds a secret:\n%s", data)
	}
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	out := mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")
	if !strings.Contains(out, "4 points replicated") {
		t.Fatalf("replicate said:\n%s", out)
	}
	if strings.Contains(out, f.c.SecretKey) {
		t.Fatal("replicate printed the secret key")
	}
	t.Log(strings.TrimSpace(out))
	out = mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")
	if !strings.Contains(out, "0 points replicated, 4 already there") {
		t.Fatalf("second replicate said:\n%s", out)
	}
	rpts := remotePoints(t, repo, "offsite")
	if len(rpts) != 4 {
		t.Fatalf("remote lists %d points", len(rpts))
	}
	want := map[string]string{}
	for _, p := range rpts {
		local := exportSHA(t, repo, p.VM, p.ID, "d0")
		outImg := filepath.Join(t.TempDir(), "remote.img")
		mustCairn(t, "--repo", repo, "export", "--remote", "offsite", "--vm", p.VM, "--point", p.ID, "--disk", "d0", outImg)
		if got := fileSHA(t, outImg); got != local {
			t.Fatalf("%s %s: export --remote differs from the local export", p.VM, p.ID)
		}
		want[p.VM+" "+p.ID] = local
	}
	mustCairn(t, "--repo", repo, "verify", "--remote", "offsite", "--sample", "50%")
	// Disaster: the appliance is gone.
	if err := os.RemoveAll(repo); err != nil {
		t.Fatal(err)
	}
	repo2 := filepath.Join(dir, "rebuilt")
	mustCairn(t, "--repo", repo2, "init")
	f.add(t, repo2, "offsite")
	out = mustCairn(t, "--repo", repo2, "pull", "--remote", "offsite")
	if !strings.Contains(out, "4 points pulled") {
		t.Fatalf("pull said:\n%s", out)
	}
	mustCairn(t, "--repo", repo2, "verify")
	for _, vm := range []string{"web", "db"} {
		for _, p := range listPoints(t, repo2, vm) {
			if got := exportSHA(t, repo2, vm, p.ID, "d0"); got != want[vm+" "+p.ID] {
				t.Fatalf("pulled %s %s differs", vm, p.ID)
			}
			delete(want, vm+" "+p.ID)
		}
	}
	if len(want) != 0 {
		t.Fatalf("points not pulled: %v", want)
	}
	if got := fileSHA(t, imgs["web"]); got != exportSHA(t, repo2, "web", "latest", "d0") {
		t.Fatal("the pulled latest point of web differs from its source image")
	}
}

// repoWithOnePoint makes a repository whose VM "a" has one point of an
// 8 MiB disk d0 holding n random bytes.
func repoWithOnePoint(t *testing.T, n int64, seed uint64) (dir, repo string) {
	t.Helper()
	dir = t.TempDir()
	repo = filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(dir, "a.img")
	makeImage(t, img, 8<<20)
	writeRandom(t, img, 0, n, seed)
	mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0", img)
	return dir, repo
}

// TestRemoteWrongKeyAndCredentials: a wrong passphrase and a wrong secret
// key fail with one clear error each and write nothing.
func TestRemoteWrongKeyAndCredentials(t *testing.T) { s3test.Each(t, testRemoteWrongKeyAndCredentials) }

func testRemoteWrongKeyAndCredentials(t *testing.T, eng s3test.Engine) {
	f := newRemoteFixtureOn(t, eng)
	dir, repo := repoWithOnePoint(t, 2<<20, 1)
	f.add(t, repo, "good")
	mustCairn(t, "--repo", repo, "remote", "init", "good")
	before := f.objectCount(t)
	bad := filepath.Join(dir, "badpass")
	if err := os.WriteFile(bad, []byte("not the passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "remote", "add", "wrongkey", "--endpoint", f.c.Endpoint, "--bucket", f.bucket, "--credentials", f.creds, "--passphrase-file", bad)
	res := runCairn(t, nil, "--repo", repo, "replicate", "--remote", "wrongkey")
	if res.code == 0 || !strings.Contains(res.stderr, "wrong key") {
		t.Fatalf("replicate with a wrong key: exit %d: %s", res.code, res.stderr)
	}
	badCreds := filepath.Join(dir, "badcreds")
	if err := os.WriteFile(badCreds, []byte("aws_access_key_id = "+f.c.AccessKey+"\naws_secret_access_key = nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "remote", "add", "wrongcreds", "--endpoint", f.c.Endpoint, "--bucket", f.bucket, "--credentials", badCreds, "--passphrase-file", f.pass)
	res = runCairn(t, nil, "--repo", repo, "replicate", "--remote", "wrongcreds")
	if res.code == 0 || !strings.Contains(res.stderr, "access denied") || !strings.Contains(res.stderr, badCreds) {
		t.Fatalf("replicate with wrong credentials: exit %d: %s", res.code, res.stderr)
	}
	// An access key the store does not know (versitygw: 404 XAdminUserNotFound).
	if err := os.WriteFile(badCreds, []byte("aws_access_key_id = CAIRNNOSUCHKEY\naws_secret_access_key = nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = runCairn(t, nil, "--repo", repo, "replicate", "--remote", "wrongcreds")
	if res.code == 0 || !strings.Contains(res.stderr, "access denied") || !strings.Contains(res.stderr, badCreds) {
		t.Fatalf("replicate with an unknown access key: exit %d: %s", res.code, res.stderr)
	}
	if after := f.objectCount(t); after != before {
		t.Fatalf("%d objects after failed runs, %d before", after, before)
	}
	// A world-readable credentials file is refused.
	if err := os.Chmod(f.creds, 0o644); err != nil {
		t.Fatal(err)
	}
	res = runCairn(t, nil, "--repo", repo, "replicate", "--remote", "good")
	if res.code == 0 || !strings.Contains(res.stderr, "chmod 600") {
		t.Fatalf("replicate with a readable credentials file: exit %d: %s", res.code, res.stderr)
	}
}

// TestRemoteImmutableCLI: --immutable-days refuses a bucket without Object
// Lock (saying how to make one), creates one when missing, and every
// object replicate writes carries a COMPLIANCE retention; remote extend
// renews them.
func TestRemoteImmutableCLI(t *testing.T) { s3test.Each(t, testRemoteImmutableCLI) }

func testRemoteImmutableCLI(t *testing.T, eng s3test.Engine) {
	f := newRemoteFixtureOn(t, eng)
	_, repo := repoWithOnePoint(t, 3<<20, 2)
	if err := f.s3.MakeBucket(context.Background(), f.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	f.add(t, repo, "plain", "--immutable-days", "2")
	res := runCairn(t, nil, "--repo", repo, "remote", "init", "plain")
	if res.code == 0 || !strings.Contains(res.stderr, "Object Lock") || !strings.Contains(res.stderr, "object-lock-enabled-for-bucket") {
		t.Fatalf("init of an unlocked bucket with --immutable-days: exit %d: %s", res.code, res.stderr)
	}
	f.bucket = s3test.NewBucketName()
	f.add(t, repo, "locked", "--immutable-days", "2")
	mustCairn(t, "--repo", repo, "remote", "init", "locked")
	out := mustCairn(t, "--repo", repo, "replicate", "--remote", "locked")
	if !strings.Contains(out, "retention:") {
		t.Fatalf("replicate did not extend retentions:\n%s", out)
	}
	n := 0
	for o := range f.s3.ListObjects(context.Background(), f.bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true}) {
		mode, until, err := s3test.Retention(context.Background(), f.s3, f.bucket, o.Key, o.VersionID)
		if err != nil || mode != minio.Compliance || until.Before(time.Now().Add(47*time.Hour)) {
			t.Fatalf("%s: retention %v %v %v", o.Key, mode, until, err)
		}
		if err := f.s3.RemoveObject(context.Background(), f.bucket, o.Key, minio.RemoveObjectOptions{VersionID: o.VersionID}); err == nil {
			t.Fatalf("%s was deleted", o.Key)
		}
		n++
	}
	if n < 4 {
		t.Fatalf("%d objects", n)
	}
	out = mustCairn(t, "--repo", repo, "remote", "extend", "locked")
	if !strings.Contains(out, "0 retentions extended") {
		t.Fatalf("extend right after replicate: %s", out)
	}
	// forgetting a locked point keeps it, and says so with a failing exit
	pts := remotePoints(t, repo, "locked")
	res = runCairn(t, nil, "--repo", repo, "forget", "--remote", "locked", "--vm", pts[0].VM, "--point", pts[0].ID)
	if res.code == 0 || !strings.Contains(res.stderr, "Object Lock retention") || !strings.Contains(res.stdout, "locked "+pts[0].VM) {
		t.Errorf("forget --remote of a locked point: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if left := remotePoints(t, repo, "locked"); len(left) != len(pts) {
		t.Errorf("forget of a locked point deleted it: %d points left of %d", len(left), len(pts))
	}
}

// TestRemotePruneCLI: prune --remote keeps what the policy keeps and the
// kept point still exports identically; forget --remote deletes one point.
func TestRemotePruneCLI(t *testing.T) {
	f := newRemoteFixture(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(dir, "a.img")
	makeImage(t, img, 16<<20)
	for i := range 3 {
		writeRandom(t, img, int64(i)*(2<<20), 2<<20, uint64(40+i))
		mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0", img)
	}
	f.add(t, repo, "off")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
	out := mustCairn(t, "--repo", repo, "prune", "--remote", "off", "--keep-last", "2")
	if !strings.Contains(out, "1 point deleted, 2 kept") {
		t.Fatalf("prune --remote said:\n%s", out)
	}
	pts := remotePoints(t, repo, "off")
	if len(pts) != 2 {
		t.Fatalf("%d remote points after prune", len(pts))
	}
	out = mustCairn(t, "--repo", repo, "forget", "--remote", "off", "--vm", "a", "--point", pts[0].ID)
	if !strings.Contains(out, "deleted a "+pts[0].ID) {
		t.Fatalf("forget --remote said:\n%s", out)
	}
	left := remotePoints(t, repo, "off")
	if len(left) != 1 || left[0].ID != pts[1].ID {
		t.Fatalf("remote points after forget: %v", left)
	}
	outImg := filepath.Join(t.TempDir(), "r.img")
	mustCairn(t, "--repo", repo, "export", "--remote", "off", "--vm", "a", "--point", "latest", "--disk", "d0", outImg)
	if fileSHA(t, outImg) != fileSHA(t, img) {
		t.Fatal("the kept remote point differs from its source")
	}
	mustCairn(t, "--repo", repo, "verify", "--remote", "off")
}

// TestRemoteMount: `cairn mount --remote` shows the remote's points
// through the same FUSE tree; every image equals the local export byte for
// byte; after a pack is altered behind cairn's back, reads of its blocks
// answer EIO while the other blocks still read.
func TestRemoteMount(t *testing.T) { s3test.Each(t, testRemoteMount) }

func testRemoteMount(t *testing.T, eng s3test.Engine) {
	testutil.RequireFUSE(t)
	f := newRemoteFixtureOn(t, eng)
	dir, repo := repoWithOnePoint(t, 3<<20, 5)
	img := filepath.Join(dir, "a.img")
	writeRandom(t, img, 5<<20, 1<<20, 6)
	mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0", img)
	f.add(t, repo, "off")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
	pts := remotePoints(t, repo, "off")
	mnt := t.TempDir()
	cmd := mountStartCLI(t, buildCairn(t), repo, mnt, "--remote", "off", "--cache-size", "8MiB")
	for i, p := range pts {
		path := filepath.Join(mnt, "a", p.ID, "disks", "d0.img")
		if got, want := fileSHA(t, path), exportSHA(t, repo, "a", p.ID, "d0"); got != want {
			t.Fatalf("point %d: %s through mount --remote differs from the local export", i, path)
		}
	}
	if got := fileSHA(t, filepath.Join(mnt, "a", "latest", "disks", "d0.img")); got != fileSHA(t, img) {
		t.Fatal("latest image through mount --remote differs from its source")
	}
	mustCairn(t, "umount", mnt)
	mountWaitExit(t, cmd)

	// Alter one byte in the middle of every pack of the bucket.
	for o := range f.s3.ListObjects(context.Background(), f.bucket, minio.ListObjectsOptions{Prefix: "cairn/packs/", Recursive: true}) {
		obj, err := f.s3.GetObject(context.Background(), f.bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 1
		if _, err := f.s3.PutObject(context.Background(), f.bucket, o.Key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cmd = mountStartCLI(t, buildCairn(t), repo, mnt, "--remote", "off")
	fh, err := os.Open(filepath.Join(mnt, "a", "latest", "disks", "d0.img"))
	if err != nil {
		t.Fatal(err)
	}
	bad, good := 0, 0
	buf := make([]byte, 64<<10)
	for off := int64(0); off < 6<<20; off += int64(len(buf)) {
		if _, err := fh.ReadAt(buf, off); err != nil {
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("read at %d: %v, want EIO or data", off, err)
			}
			bad++
		} else {
			good++
		}
	}
	fh.Close()
	if bad == 0 || good == 0 {
		t.Fatalf("%d blocks answered EIO and %d read: want both", bad, good)
	}
	t.Logf("after the damage: %d blocks EIO, %d read", bad, good)
	mustCairn(t, "umount", mnt)
	mountWaitExit(t, cmd)
}

// TestRemoteMountGuestFiles: guest files under fs/ read through
// `cairn mount --remote` equal their source (content, modes, links, times).
func TestRemoteMountGuestFiles(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4", "sgdisk")
	repo, src := replicatedGuest(t, treeSpec{files: 200, bigDir: 300, depth: 8, bigFile: 8 * mib, links: true, modes: true, sparse: true}, 7)
	mnt := t.TempDir()
	cmd := mountStartCLI(t, buildCairn(t), repo, mnt, "--remote", "off")
	want := walkTree(t, src, nil)
	got := walkTree(t, filepath.Join(mnt, "g", "latest", "fs", "sda", "p1"), func(rel string) bool { return rel == "lost+found" })
	compareTrees(t, want, got, compareOpts{modes: true, links: true, mtimeGran: time.Second})
	mustCairn(t, "umount", mnt)
	mountWaitExit(t, cmd)
}

// TestRemoteRestoreFile: `cairn files --remote` lists what `cairn files`
// lists, and files restored with `restore-file --remote` from a remote
// point equal those restored from the local point and their source
// (content, modes, links, times) — without a mount.
func TestRemoteRestoreFile(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4", "sgdisk")
	repo, src := replicatedGuest(t, treeSpec{files: 120, bigDir: 200, depth: 6, bigFile: 4 * mib, links: true, modes: true, sparse: true}, 11)
	sel := []string{"--vm", "g", "--point", "latest", "--disk", "sda", "--part", "1"}
	for _, p := range []string{"/"} {
		local := mustCairn(t, append(append([]string{"--repo", repo, "files"}, sel...), "--json", p)...)
		remote := mustCairn(t, append(append([]string{"--repo", repo, "files", "--remote", "off"}, sel...), "--json", p)...)
		if local != remote || len(local) < 100 {
			t.Fatalf("files %s --remote:\n%s\nlocal:\n%s", p, remote, local)
		}
	}
	localDest := filepath.Join(t.TempDir(), "local")
	remoteDest := filepath.Join(t.TempDir(), "remote")
	mustCairn(t, append(append([]string{"--repo", repo, "restore-file"}, sel...), "/", localDest)...)
	out := mustCairn(t, append(append([]string{"--repo", repo, "restore-file", "--remote", "off"}, sel...), "/", remoteDest)...)
	t.Log(strings.TrimSpace(out))
	skip := func(rel string) bool { return rel == "lost+found" }
	got := walkTree(t, remoteDest, skip)
	compareTrees(t, walkTree(t, localDest, skip), got, compareOpts{modes: true, links: true, mtimeGran: time.Second})
	compareTrees(t, walkTree(t, src, nil), got, compareOpts{modes: true, links: true, mtimeGran: time.Second})
	remoteFindMatchesLocal(t, repo, src) // cairn history and search --remote
	// A point the remote lacks is named.
	res := runCairn(t, nil, append([]string{"--repo", repo, "files", "--remote", "off", "--vm", "nosuch", "--disk", "sda"}, "/")...)
	if res.code == 0 || !strings.Contains(res.stderr, "nosuch") {
		t.Fatalf("files --remote of a missing VM: %d %s", res.code, res.stderr)
	}
}

// replicatedGuest builds a guest tree, an ext4 filesystem of it in
// partition 1 of a GPT disk, imports the disk as VM g (disk sda) into a
// new repository and replicates it to remote "off" on the shared RGW. It
// returns the repository and the tree's source directory.
func replicatedGuest(t *testing.T, spec treeSpec, seed uint64) (repo, src string) {
	t.Helper()
	f := newRemoteFixture(t)
	dir := t.TempDir()
	src = filepath.Join(dir, "src")
	makeGuestTree(t, src, spec, seed)
	fs := filepath.Join(dir, "ext4.fs")
	buildExt4(t, fs, src)
	st, err := os.Stat(fs)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.img")
	makeImage(t, disk, st.Size()+2*mib)
	sh(t, "sgdisk", "-n", fmt.Sprintf("1:2048:%d", (mib+st.Size())/512-1), disk)
	writeAt(t, disk, fs, mib)
	repo = filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "g", "--disk", "sda", disk)
	f.add(t, repo, "off")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
	return repo, src
}

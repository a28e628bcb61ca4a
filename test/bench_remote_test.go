package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnbackup/cairn/internal/rgwtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// BenchmarkRemote (issue 16's performance targets):
//
//	go test -run '^$' -bench BenchmarkRemote -benchtime 1x ./test/
//
// Against the real Ceph RGW the tests start (memstore OSD, radosgw on
// 127.0.0.1), in alternating rounds of one run:
//
//   - first replication (`cairn replicate`, a fresh bucket) of a 4 GiB disk
//     holding 2 GiB of random data, against `rclone copy` of a 2 GiB random
//     file to the same radosgw;
//   - replication of the next point with 1 % of the disk changed, against
//     that round's first replication;
//   - sequential read (dd bs=1M, page cache dropped) of the point's image
//     through `cairn mount --remote`, cold (new mount) against `rclone copy`
//     of the point's packs (the same stored bytes) into tmpfs, and warm
//     (the mount's block cache holding the point) against the local
//     `cairn mount`;
//
// and the peak RSS of `cairn replicate` for the 4 GiB disk and for a VM of
// 50 points replicated in one run. $CAIRN_BENCH_REMOTE_ROUNDS sets the
// rounds (default 3).
func BenchmarkRemote(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireFUSE(b)
	testutil.RequireTools(b, "rclone", "dd")
	c := rgwtest.Shared(b)
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_REMOTE_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	ctx := context.Background()
	f := newRemoteBench(b, c)
	dir, s3, creds, key := f.dir, f.s3, f.creds, f.key
	rclone := rcloneEnv(c)
	// tmpfs for what rclone downloads (the reads through the mount go to
	// /dev/null: neither side writes to a disk).
	shm := filepath.Join(dir, "shm")
	if err := os.MkdirAll(shm, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", shm).CombinedOutput(); err != nil {
		b.Fatalf("mount tmpfs: %v %s", err, out)
	}
	b.Cleanup(func() { exec.Command("umount", "-l", shm).Run() })

	const size = remoteBenchSize
	src := f.disk(b)
	ref := filepath.Join(dir, "ref.bin") // rclone's 2 GiB file
	writeRandom(b, ref, 0, size/2, 99)
	refBucket := rgwtest.NewBucketName()
	if err := s3.MakeBucket(ctx, refBucket, minio.MakeBucketOptions{}); err != nil {
		b.Fatal(err)
	}

	type repStats struct {
		Stats struct {
			BlocksRead    int64 `json:"blocks_read"`
			BlocksNew     int64 `json:"blocks_new"`
			PackBytes     int64 `json:"pack_bytes"`
			Packs         int64 `json:"packs"`
			BytesUploaded int64 `json:"bytes_uploaded"`
		} `json:"stats"`
	}
	// $CAIRN_BENCH_REMOTE_DEBUG=FILE appends replicate's phase timings
	// (--log-level debug) to FILE.
	debugFile := os.Getenv("CAIRN_BENCH_REMOTE_DEBUG")
	debug := debugFile != ""
	replicate := func(repo, name string, args ...string) (time.Duration, int64, repStats) {
		b.Helper()
		start := time.Now()
		pre := []string{"--repo", repo}
		if debug {
			pre = append(pre, "--log-level", "debug")
		}
		out, errOut, peak := runCairnPeak(b, append(append(pre, "replicate", "--remote", name, "--json"), args...)...)
		d := time.Since(start)
		if debug {
			f, err := os.OpenFile(debugFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(f, "replicate %s (%v):\n%s\n", strings.Join(args, " "), d, errOut)
			f.Close()
		}
		var st repStats
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			b.Fatalf("replicate --json: %v\n%s", err, out)
		}
		return d, peak, st
	}

	var (
		refUp, refUp32, firstRep, incRep, refDown, cold, warm, local []time.Duration
		upRatio, up32Ratio, incRatio, coldRatio, warmRatio           []float64
		firstRSS, incRSS                                             []int64
		first, inc                                                   repStats
	)
	for round := 0; round < rounds; round++ {
		// rclone: upload the 2 GiB file.
		dropPageCache()
		d, err := timeIt(func() error { return runEnv(rclone, "rclone", "copy", ref, "rgw:"+refBucket) })
		if err != nil {
			b.Fatal(err)
		}
		refUp = append(refUp, d)
		if err := emptyBucket(ctx, s3, refBucket); err != nil {
			b.Fatal(err)
		}
		gcRGW(b, c)
		// rclone with parts as large as cairn's packs (its default 5 MiB
		// parts are slow against RGW): the stronger reference.
		dropPageCache()
		d, err = timeIt(func() error {
			return runEnv(rclone, "rclone", "copy", "--s3-chunk-size", "32M", ref, "rgw:"+refBucket)
		})
		if err != nil {
			b.Fatal(err)
		}
		refUp32 = append(refUp32, d)
		if err := emptyBucket(ctx, s3, refBucket); err != nil {
			b.Fatal(err)
		}
		gcRGW(b, c)

		// cairn: a fresh repository and bucket.
		repo := filepath.Join(dir, fmt.Sprintf("repo%d", round))
		mustCairn(b, "--repo", repo, "init")
		mustCairn(b, "--repo", repo, "import", "--vm", "big", "--disk", "d0", src)
		bucket := rgwtest.NewBucketName()
		mustCairn(b, "--repo", repo, "remote", "add", "off", "--endpoint", c.Endpoint, "--bucket", bucket,
			"--credentials", creds, "--key-file", key)
		mustCairn(b, "--repo", repo, "remote", "init", "off")
		dropPageCache()
		d, peak, st := replicate(repo, "off")
		firstRep, firstRSS, first = append(firstRep, d), append(firstRSS, peak), st
		upRatio = append(upRatio, refUp[round].Seconds()/d.Seconds())
		up32Ratio = append(up32Ratio, refUp32[round].Seconds()/d.Seconds())

		// 1 % changed: 64 KiB blocks scattered over the data.
		changed := changeBlocks(b, src, size, size, 64<<10, 0.01, uint64(round)+7)
		cf := filepath.Join(dir, "changed")
		if err := os.WriteFile(cf, []byte(changed), 0o644); err != nil {
			b.Fatal(err)
		}
		mustCairn(b, "--repo", repo, "import", "--vm", "big", "--disk", "d0", "--changed-file", cf, src)
		dropPageCache()
		d, peak, st = replicate(repo, "off")
		incRep, incRSS, inc = append(incRep, d), append(incRSS, peak), st
		incRatio = append(incRatio, 100*d.Seconds()/firstRep[round].Seconds())

		// Cold: rclone downloads the packs, then a new remote mount reads the image.
		dropPageCache()
		d, err = timeIt(func() error { return runEnv(rclone, "rclone", "copy", "rgw:"+bucket+"/cairn/packs", shm) })
		if err != nil {
			b.Fatal(err)
		}
		refDown = append(refDown, d)
		clearDir(b, shm)
		var rp struct {
			Points []struct{ ID string } `json:"points"`
		}
		if err := json.Unmarshal([]byte(mustCairn(b, "--repo", repo, "points", "--remote", "off", "--json")), &rp); err != nil || len(rp.Points) != 2 {
			b.Fatalf("remote points: %v %+v", err, rp)
		}
		pts := []string{rp.Points[0].ID}
		rmnt := filepath.Join(dir, fmt.Sprintf("rmnt%d", round))
		stop := startMount(b, repo, rmnt, "--remote", "off", "--cache-size", "3GiB")
		img := filepath.Join(rmnt, "big", pts[0], "disks", "d0.img")
		dropPageCache()
		cd := timeCmd(b, "dd", "if="+img, "of=/dev/null", "bs=1M")
		cold = append(cold, cd)
		coldRatio = append(coldRatio, d.Seconds()/cd.Seconds())
		// Warm: the same mount again (its cache holds the point) against
		// the local mount; the page cache dropped before each.
		lmnt := filepath.Join(dir, fmt.Sprintf("lmnt%d", round))
		stopLocal := startMount(b, repo, lmnt)
		dropPageCache()
		ld := timeCmd(b, "dd", "if="+filepath.Join(lmnt, "big", pts[0], "disks", "d0.img"), "of=/dev/null", "bs=1M")
		dropPageCache()
		wd := timeCmd(b, "dd", "if="+img, "of=/dev/null", "bs=1M")
		local, warm = append(local, ld), append(warm, wd)
		warmRatio = append(warmRatio, ld.Seconds()/wd.Seconds())
		stopLocal()
		stop()
		if err := emptyBucket(ctx, s3, bucket); err != nil {
			b.Fatal(err)
		}
		_ = s3.RemoveBucket(ctx, bucket)
		gcRGW(b, c)
		os.RemoveAll(repo)
		b.Logf("round %d: rclone up %v (32M parts %v), replicate %v (%.2fx), 1%% %v (%.1f%%), rclone down %v, cold %v (%.2fx), local %v, warm %v (%.2fx)",
			round, refUp[round], refUp32[round], firstRep[round], upRatio[round], incRep[round], incRatio[round], refDown[round], cd, coldRatio[round], ld, wd, warmRatio[round])
	}

	// Peak RSS of a VM with 50 points replicated in one run: a 1 GiB disk
	// with 256 MiB of data, 4 MiB changed per point.
	manyRSS, manyTime, manySt := func() (int64, time.Duration, repStats) {
		img := filepath.Join(dir, "many.img")
		makeImage(b, img, 1<<30)
		for off := int64(0); off < 1<<30; off += 4 << 20 {
			writeRandom(b, img, off, 1<<20, uint64(off>>20)+1000)
		}
		repo := filepath.Join(dir, "many")
		mustCairn(b, "--repo", repo, "init")
		mustCairn(b, "--repo", repo, "import", "--vm", "many", "--disk", "d0", img)
		for i := 1; i < 50; i++ {
			off := int64(i) * 20 << 20 % (1 << 30)
			writeRandom(b, img, off, 4<<20, uint64(i)+5000)
			mustCairn(b, "--repo", repo, "import", "--vm", "many", "--disk", "d0", "--changed", fmt.Sprintf("%d:%d", off, 4<<20), img)
		}
		bucket := rgwtest.NewBucketName()
		mustCairn(b, "--repo", repo, "remote", "add", "off", "--endpoint", c.Endpoint, "--bucket", bucket,
			"--credentials", creds, "--key-file", key)
		mustCairn(b, "--repo", repo, "remote", "init", "off")
		d, peak, st := replicate(repo, "off")
		if err := emptyBucket(ctx, s3, bucket); err != nil {
			b.Fatal(err)
		}
		_ = s3.RemoveBucket(ctx, bucket)
		gcRGW(b, c)
		return peak, d, st
	}()

	mib := func(xs []int64) string {
		var s []string
		for _, x := range xs {
			s = append(s, strconv.FormatInt(x>>20, 10))
		}
		return strings.Join(s, ", ")
	}
	ratioList := func(xs []float64, f string) string {
		var s []string
		for _, x := range xs {
			s = append(s, fmt.Sprintf(f, x))
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	data := float64(size / 2)
	fr, ir := medianDuration(firstRep), medianDuration(incRep)
	rows := []string{
		fmt.Sprintf("| first replication, 4 GiB disk with 2 GiB random (%d packs, %s uploaded) | %.1f s (%.0f MB/s) | rclone copy of a 2 GiB file %.1f s (%.0f MB/s) | **%.2fx** %s | ≥ 0.8x |",
			first.Stats.Packs, humanSize(first.Stats.BytesUploaded), fr.Seconds(), data/fr.Seconds()/1e6,
			medianDuration(refUp).Seconds(), data/medianDuration(refUp).Seconds()/1e6, medianFloat(upRatio), ratioList(upRatio, "%.2f")),
		fmt.Sprintf("| the same | | rclone copy --s3-chunk-size 32M %.1f s (%.0f MB/s) | **%.2fx** %s | (for reference) |",
			medianDuration(refUp32).Seconds(), data/medianDuration(refUp32).Seconds()/1e6, medianFloat(up32Ratio), ratioList(up32Ratio, "%.2f")),
		fmt.Sprintf("| next point, 1 %% changed (%d blocks read, %s uploaded) | %.2f s | first replication %.1f s | **%.1f %%** %s | < 5 %% |",
			inc.Stats.BlocksRead, humanSize(inc.Stats.BytesUploaded), ir.Seconds(), fr.Seconds(), medianFloat(incRatio), ratioList(incRatio, "%.1f")),
		fmt.Sprintf("| `mount --remote`, dd of the 4 GiB image, cold | %.1f s | rclone copy of the point's packs %.1f s | **%.2fx** %s | ≥ 0.5x |",
			medianDuration(cold).Seconds(), medianDuration(refDown).Seconds(), medianFloat(coldRatio), ratioList(coldRatio, "%.2f")),
		fmt.Sprintf("| `mount --remote`, dd of the 4 GiB image, warm | %.1f s | local `cairn mount` %.1f s | **%.2fx** %s | ≥ 0.8x |",
			medianDuration(warm).Seconds(), medianDuration(local).Seconds(), medianFloat(warmRatio), ratioList(warmRatio, "%.2f")),
	}
	writeSection(b, "remote", fmt.Sprintf(`## Offsite copies on Ceph RGW (BenchmarkRemote)

One run on %s against the Ceph RGW 16.2 the tests start (memstore OSD,
radosgw on 127.0.0.1; the store shares the 2 vCPUs with cairn), default
32 MiB packs. Rounds alternate the reference and cairn; the page cache is
dropped before every timed step. Replication times are whole `+"`cairn replicate`"+`
runs (process start included; the remote has a key file: the first derives the
key with argon2id and keeps it in the key cache, the next takes it from there;
with a passphrase each run pays argon2id, 0.2 s quiet); rclone 1.60 runs with
its defaults (5 MiB parts, 4 at once) and, for reference, with 32 MiB parts. Ratios are throughput (reference time / cairn time;
higher is better) except the 1 %% row (cairn / first replication; lower is
better). Medians of %d rounds, all rounds in brackets.

| case | cairn | reference | ratio | target |
|---|---|---|---|---|
%s

Peak RSS of `+"`cairn replicate`"+`: the 4 GiB disk %s MiB (first replication), %s MiB
(1 %% changed); a VM with 50 points (1 GiB disk, 256 MiB of data, 4 MiB
changed per point; %d blocks read, %d packs) replicated in one run in %.1f s:
%d MiB.
`, time.Now().UTC().Format("2006-01-02"), rounds, strings.Join(rows, "\n"), mib(firstRSS), mib(incRSS),
		manySt.Stats.BlocksRead, manySt.Stats.Packs, manyTime.Seconds(), manyRSS>>20))
}

// rcloneEnv configures an rclone remote "rgw" for the cluster through the
// environment (no config file).
func rcloneEnv(c *rgwtest.Cluster) []string {
	return []string{
		"RCLONE_CONFIG=/dev/null",
		"RCLONE_CONFIG_RGW_TYPE=s3",
		"RCLONE_CONFIG_RGW_PROVIDER=Ceph",
		"RCLONE_CONFIG_RGW_ENDPOINT=" + c.Endpoint,
		"RCLONE_CONFIG_RGW_ACCESS_KEY_ID=" + c.AccessKey,
		"RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=" + c.SecretKey,
	}
}

func runEnv(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	// AWS_CA_BUNDLE (set on some machines) makes rclone's AWS SDK fail
	// to build its HTTP client; the store here speaks plain http.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// runCairnPeak runs cairn and returns its stdout, stderr and peak RSS.
func runCairnPeak(tb testing.TB, args ...string) (stdout, stderr string, peak int64) {
	tb.Helper()
	cmd := exec.Command(buildCairn(tb), args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		tb.Fatalf("cairn %s: %v", strings.Join(args, " "), err)
	}
	w := watchRSS(cmd.Process.Pid)
	err := cmd.Wait()
	peak = w.Peak()
	if err != nil {
		tb.Fatalf("cairn %s: %v: %s", strings.Join(args, " "), err, se.String())
	}
	return so.String(), se.String(), peak
}

// startMount starts `cairn mount` (flags before the mount point) and
// returns a function that unmounts it and waits for the process.
func startMount(tb testing.TB, repo, mnt string, flags ...string) func() {
	tb.Helper()
	_, stop := startMountPID(tb, buildCairn(tb), repo, mnt, flags...)
	return stop
}

// emptyBucket deletes every object of an unlocked bucket.
func emptyBucket(ctx context.Context, s3 *minio.Client, bucket string) error {
	objs := make(chan minio.ObjectInfo)
	go func() {
		defer close(objs)
		for o := range s3.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				objs <- o
			}
		}
	}()
	var errs []error
	for e := range s3.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		errs = append(errs, e.Err)
	}
	return errors.Join(errs...)
}

// gcRGW makes radosgw release deleted objects' data now (memstore keeps
// it in memory until the garbage collector runs, hours later by default).
func gcRGW(tb testing.TB, c *rgwtest.Cluster) {
	tb.Helper()
	if out, err := c.Admin(context.Background(), "gc", "process", "--include-all"); err != nil {
		tb.Logf("radosgw-admin gc process: %v %s", err, out)
	}
}

func clearDir(tb testing.TB, dir string) {
	tb.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			tb.Fatal(err)
		}
	}
}

// remoteBench is the setup BenchmarkRemote and its two single-case tools
// (BenchmarkRemoteIncremental, BenchmarkRemoteColdRead) share: a
// directory, an S3 client of the store, a credentials file and a key
// file (docs/remote.md's setup: the first replication derives the master
// key with argon2id and keeps it in the key cache, later runs take it
// from there; with a passphrase every run pays argon2id, 0.2 s of CPU
// quiet, which BenchmarkRemoteIncremental measures with
// CAIRN_BENCH_REMOTE_KEY=passphrase).
type remoteBench struct {
	dir, creds, key string
	s3              *minio.Client
}

// remoteBenchSize is the benchmarks' disk: 4 GiB, 2 GiB of it random.
const remoteBenchSize = int64(4) << 30

func newRemoteBench(b *testing.B, c *rgwtest.Cluster) remoteBench {
	b.Helper()
	f := remoteBench{dir: b.TempDir()}
	var err error
	if f.s3, err = minio.New(strings.TrimPrefix(c.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(c.AccessKey, c.SecretKey, "")}); err != nil {
		b.Fatal(err)
	}
	f.creds, f.key = filepath.Join(f.dir, "creds"), filepath.Join(f.dir, "key")
	if err := os.WriteFile(f.creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", c.AccessKey, c.SecretKey)), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(f.key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		b.Fatal(err)
	}
	return f
}

// disk writes the benchmarks' disk image: 4 GiB, 64 MiB of random data
// then 64 MiB of hole, over and over.
func (f remoteBench) disk(b *testing.B) string {
	src := filepath.Join(f.dir, "disk.img")
	makeImage(b, src, remoteBenchSize)
	for off := int64(0); off < remoteBenchSize; off += 128 << 20 {
		writeRandom(b, src, off, 64<<20, uint64(off>>20)+1)
	}
	return src
}

// benchBin is a cairn binary a benchmark tool runs, by name.
type benchBin struct{ name, path string }

// benchBins are the binaries of $CAIRN_BENCH_REMOTE_BINS
// ("name=path,name=path"), alternated in each round; by default the
// tree's own build.
func benchBins(b *testing.B) []benchBin {
	s := os.Getenv("CAIRN_BENCH_REMOTE_BINS")
	if s == "" {
		return []benchBin{{"tree", buildCairn(b)}}
	}
	var bins []benchBin
	for _, f := range strings.Split(s, ",") {
		name, path, ok := strings.Cut(f, "=")
		if !ok {
			b.Fatalf("CAIRN_BENCH_REMOTE_BINS: want name=path, got %q", f)
		}
		bins = append(bins, benchBin{name, path})
	}
	return bins
}

// benchEnvInt is a positive integer from the environment, or def.
func benchEnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

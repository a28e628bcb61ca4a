package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/rgwtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// BenchmarkRemoteIncremental times only the 1 % incremental replication of
// BenchmarkRemote (the same 4 GiB disk with 2 GiB of random data, 1 % of
// its blocks changed per point), a few points after each first
// replication, so that changes to its fixed costs can be measured
// without the rest of that benchmark:
//
//	go test -run '^$' -bench BenchmarkRemoteIncremental -benchtime 1x ./test/
//
// $CAIRN_BENCH_REMOTE_BINS="name=path,name=path" alternates cairn
// binaries (e.g. one built from main and one from a branch) in each
// round, each on its own repository and bucket; by default the tree's own
// build runs. $CAIRN_BENCH_REMOTE_ROUNDS sets the rounds (default 3),
// $CAIRN_BENCH_REMOTE_POINTS the incremental points per round (default 3),
// $CAIRN_BENCH_REMOTE_KEY=passphrase|keyfile the remote's key (default
// keyfile, as BenchmarkRemote; a passphrase pays argon2id on every run), $CAIRN_BENCH_REMOTE_DEBUG=FILE appends
// each incremental run's --log-level debug output to FILE,
// $CAIRN_BENCH_REMOTE_PERF=DIR profiles each with perf record into DIR. It writes no
// section of docs/performance.md: it logs each run and the medians, and
// make bench (which sets $CAIRN_BENCH_OUT) skips it.
func BenchmarkRemoteIncremental(b *testing.B) {
	if os.Getenv("CAIRN_BENCH_OUT") != "" {
		b.Skip("a tool for measuring the 1 % replication alone: run it by name, without CAIRN_BENCH_OUT")
	}
	testutil.RequireRoot(b)
	c := rgwtest.Shared(b)
	rounds, points := benchEnvInt("CAIRN_BENCH_REMOTE_ROUNDS", 3), benchEnvInt("CAIRN_BENCH_REMOTE_POINTS", 3)
	bins := benchBins(b)
	debugFile := os.Getenv("CAIRN_BENCH_REMOTE_DEBUG")
	ctx := context.Background()
	f := newRemoteBench(b, c)
	dir, s3, creds := f.dir, f.s3, f.creds
	keyFlag := []string{"--key-file", f.key}
	if os.Getenv("CAIRN_BENCH_REMOTE_KEY") == "passphrase" {
		keyFlag = []string{"--passphrase-file", filepath.Join(dir, "pass")}
		if err := os.WriteFile(keyFlag[1], []byte("a long offsite passphrase\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	const size = remoteBenchSize
	src := f.disk(b)
	var lastCPU time.Duration // user + system time of the last run
	run := func(bin string, args ...string) (time.Duration, string) {
		b.Helper()
		cmd := exec.Command(bin, args...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
		}
		lastCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return d, string(out)
	}
	times, cpus := map[string][]time.Duration{}, map[string][]time.Duration{}
	seed := uint64(1000)
	// Paired: one repository and bucket per round, set up by the first
	// binary, and each binary in turn replicates the next 1 % point (the
	// binaries must share the remote format): pairs seconds apart on a
	// machine whose load swings.
	paired := os.Getenv("CAIRN_BENCH_REMOTE_PAIRED") != ""
	groups := [][]benchBin{}
	if paired {
		groups = append(groups, bins)
	} else {
		for _, bn := range bins {
			groups = append(groups, []benchBin{bn})
		}
	}
	for round := 0; round < rounds; round++ {
		for _, group := range groups {
			bn := group[0]
			repo := filepath.Join(dir, "repo-"+bn.name)
			os.RemoveAll(repo)
			run(bn.path, "--repo", repo, "init")
			run(bn.path, "--repo", repo, "import", "--vm", "big", "--disk", "d0", src)
			bucket := rgwtest.NewBucketName()
			run(bn.path, append([]string{"--repo", repo, "remote", "add", "off", "--endpoint", c.Endpoint, "--bucket", bucket, "--credentials", creds}, keyFlag...)...)
			run(bn.path, "--repo", repo, "remote", "init", "off")
			first, _ := run(bn.path, "--repo", repo, "replicate", "--remote", "off")
			for p := 0; p < points*len(group); p++ {
				bn := group[p%len(group)]
				seed++
				cf := filepath.Join(dir, "changed")
				if err := os.WriteFile(cf, []byte(changeBlocks(b, src, size, size, 64<<10, 0.01, seed)), 0o644); err != nil {
					b.Fatal(err)
				}
				run(bn.path, "--repo", repo, "import", "--vm", "big", "--disk", "d0", "--changed-file", cf, src)
				dropPageCache()
				args := []string{"--repo", repo}
				if debugFile != "" {
					args = append(args, "--log-level", "debug")
				}
				started := time.Now()
				bin, rargs := bn.path, append(args, "replicate", "--remote", "off")
				if pd := os.Getenv("CAIRN_BENCH_REMOTE_PERF"); pd != "" {
					// profile each incremental run (perf record)
					rargs = append([]string{"record", "-F", "2000", "-g", "-o", filepath.Join(pd, fmt.Sprintf("perf-%s-%d-%d.data", bn.name, round, p)), "--", bin}, rargs...)
					bin = "perf"
				}
				d, out := run(bin, rargs...)
				times[bn.name], cpus[bn.name] = append(times[bn.name], d), append(cpus[bn.name], lastCPU)
				b.Logf("round %d %s: first %v, incremental %d: %v (%.1f %%), CPU %v", round, bn.name, first.Round(time.Millisecond), p, d.Round(time.Millisecond), 100*d.Seconds()/first.Seconds(), lastCPU.Round(time.Millisecond))
				if debugFile != "" {
					f, err := os.OpenFile(debugFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
					if err != nil {
						b.Fatal(err)
					}
					fmt.Fprintf(f, "== %s round %d point %d: %v started %s\n%s\n", bn.name, round, p, d, started.UTC().Format(time.RFC3339Nano), out)
					f.Close()
				}
			}
			os.RemoveAll(repo)
			if err := emptyBucket(ctx, s3, bucket); err != nil {
				b.Fatal(err)
			}
			_ = s3.RemoveBucket(ctx, bucket)
			gcRGW(b, c)
		}
	}
	for _, bn := range bins {
		ds := append([]time.Duration(nil), times[bn.name]...)
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		cs := append([]time.Duration(nil), cpus[bn.name]...)
		sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
		b.Logf("%s: incremental median %v, range %v-%v over %d runs; CPU (user+system) median %v, range %v-%v", bn.name,
			medianDuration(ds).Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond), len(ds),
			medianDuration(cs).Round(time.Millisecond), cs[0].Round(time.Millisecond), cs[len(cs)-1].Round(time.Millisecond))
	}
}

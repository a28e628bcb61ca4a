package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/rgwtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// BenchmarkRemoteColdRead measures only the cold `cairn mount --remote`
// read of BenchmarkRemote (dd of the 4 GiB image with 2 GiB of random
// data, page cache dropped) and the mount process's CPU time for it, so
// that changes to the read path's CPU per byte can be measured without the
// rest of that benchmark (on a shared machine CPU-seconds per read are
// steadier than wall time):
//
//	go test -run '^$' -bench BenchmarkRemoteColdRead -benchtime 1x ./test/
//
// The point is replicated once; each round then starts a fresh mount per
// binary, reads the image cold, then warm (the same mount: its cache must
// serve it). $CAIRN_BENCH_REMOTE_BINS="name=path,name=path" alternates
// cairn binaries in each round (by default the tree's own build),
// $CAIRN_BENCH_REMOTE_ROUNDS sets the rounds (default 3),
// $CAIRN_BENCH_REMOTE_RCLONE=1 adds rclone's download of the packs to
// each round (the benchmark's reference), $CAIRN_BENCH_REMOTE_PERF=DIR
// profiles the mount process during each cold read (perf record -g) into
// DIR, $CAIRN_BENCH_REMOTE_CACHE sets the mount's --cache-size (default
// 3GiB, as BenchmarkRemote). It writes no section of docs/performance.md:
// it logs each run and the medians, and make bench (which sets
// $CAIRN_BENCH_OUT) skips it.
// $CAIRN_BENCH_REMOTE_MOUNTLOG=FILE appends the mounts' stderr to FILE
// (with GODEBUG=gctrace=1: the mount's garbage collections).
func BenchmarkRemoteColdRead(b *testing.B) {
	if os.Getenv("CAIRN_BENCH_OUT") != "" {
		b.Skip("a tool for measuring the cold mount --remote alone: run it by name, without CAIRN_BENCH_OUT")
	}
	testutil.RequireRoot(b)
	testutil.RequireFUSE(b)
	testutil.RequireTools(b, "dd")
	c := rgwtest.Shared(b)
	rounds := benchEnvInt("CAIRN_BENCH_REMOTE_ROUNDS", 3)
	bins := benchBins(b)
	withRclone := os.Getenv("CAIRN_BENCH_REMOTE_RCLONE") != ""
	perfDir := os.Getenv("CAIRN_BENCH_REMOTE_PERF")
	cacheSize := "3GiB" // BenchmarkRemote's: the warm read is served from it
	if s := os.Getenv("CAIRN_BENCH_REMOTE_CACHE"); s != "" {
		cacheSize = s
	}
	ctx := context.Background()
	f := newRemoteBench(b, c)
	dir, s3, creds, key := f.dir, f.s3, f.creds, f.key
	const size = remoteBenchSize
	src := f.disk(b)
	run := func(bin string, args ...string) string {
		b.Helper()
		cmd := exec.Command(bin, args...)
		var se bytes.Buffer
		cmd.Stderr = &se
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("%s %s: %v\n%s%s", bin, strings.Join(args, " "), err, out, se.String())
		}
		return string(out)
	}
	repo := filepath.Join(dir, "repo")
	bucket := rgwtest.NewBucketName()
	run(bins[0].path, "--repo", repo, "init")
	run(bins[0].path, "--repo", repo, "import", "--vm", "big", "--disk", "d0", src)
	run(bins[0].path, "--repo", repo, "remote", "add", "off", "--endpoint", c.Endpoint, "--bucket", bucket, "--credentials", creds, "--key-file", key)
	run(bins[0].path, "--repo", repo, "remote", "init", "off")
	run(bins[0].path, "--repo", repo, "replicate", "--remote", "off")
	b.Cleanup(func() {
		if err := emptyBucket(ctx, s3, bucket); err == nil {
			_ = s3.RemoveBucket(ctx, bucket)
		}
		gcRGW(b, c)
	})
	var rp struct {
		Points []struct{ ID string } `json:"points"`
	}
	if err := json.Unmarshal([]byte(run(bins[0].path, "--repo", repo, "points", "--remote", "off", "--json")), &rp); err != nil || len(rp.Points) != 1 {
		b.Fatalf("remote points: %v %+v", err, rp)
	}
	pointID := rp.Points[0].ID
	shm := filepath.Join(dir, "shm")
	if withRclone {
		if err := os.MkdirAll(shm, 0o755); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", shm).CombinedOutput(); err != nil {
			b.Fatalf("mount tmpfs: %v %s", err, out)
		}
		b.Cleanup(func() { exec.Command("umount", "-l", shm).Run() })
	}

	type result struct{ cold, coldCPU, warm, warmCPU, ref []time.Duration }
	res := map[string]*result{}
	for _, bn := range bins {
		res[bn.name] = &result{}
	}
	for round := 0; round < rounds; round++ {
		for _, bn := range bins {
			r := res[bn.name]
			var ref time.Duration
			if withRclone {
				dropPageCache()
				start := time.Now()
				if err := runEnv(rcloneEnv(c), "rclone", "copy", "rgw:"+bucket+"/cairn/packs", shm); err != nil {
					b.Fatal(err)
				}
				ref = time.Since(start)
				r.ref = append(r.ref, ref)
				clearDir(b, shm)
			}
			mnt := filepath.Join(dir, "mnt-"+bn.name)
			pid, stop := startMountPID(b, bn.path, repo, mnt, "--remote", "off", "--cache-size", cacheSize)
			img := filepath.Join(mnt, "big", pointID, "disks", "d0.img")
			dropPageCache()
			var perf *exec.Cmd
			if perfDir != "" {
				perf = exec.Command("perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(pid),
					"-o", filepath.Join(perfDir, fmt.Sprintf("perf-%s-%d.data", bn.name, round)))
				if err := perf.Start(); err != nil {
					b.Fatal(err)
				}
				time.Sleep(time.Second)
			}
			cpu0, flt0 := procStat(b, pid)
			cd := timeCmd(b, "dd", "if="+img, "of=/dev/null", "bs=1M")
			cpu1, flt1 := procStat(b, pid)
			if perf != nil {
				perf.Process.Signal(os.Interrupt)
				perf.Wait()
			}
			dropPageCache()
			wd := timeCmd(b, "dd", "if="+img, "of=/dev/null", "bs=1M")
			cpu2 := procCPU(b, pid)
			stop()
			r.cold, r.coldCPU = append(r.cold, cd), append(r.coldCPU, cpu1-cpu0)
			r.warm, r.warmCPU = append(r.warm, wd), append(r.warmCPU, cpu2-cpu1)
			msg := fmt.Sprintf("round %d %s: cold %v (mount CPU %v, %d minor faults), warm %v (mount CPU %v)", round, bn.name,
				cd.Round(time.Millisecond), (cpu1 - cpu0).Round(time.Millisecond), flt1-flt0, wd.Round(time.Millisecond), (cpu2 - cpu1).Round(time.Millisecond))
			if withRclone {
				msg += fmt.Sprintf(", rclone down %v (%.2fx)", ref.Round(time.Millisecond), ref.Seconds()/cd.Seconds())
			}
			b.Log(msg)
		}
	}
	spread := func(ds []time.Duration) string {
		ds = append([]time.Duration(nil), ds...)
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%v [%v-%v]", medianDuration(ds).Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	for _, bn := range bins {
		r := res[bn.name]
		b.Logf("%s over %d rounds: cold %s, mount CPU %s; warm %s, mount CPU %s; rclone %s", bn.name, len(r.cold),
			spread(r.cold), spread(r.coldCPU), spread(r.warm), spread(r.warmCPU), spread(r.ref))
	}
}

// startMountPID starts `bin mount` (flags before the mount point) and
// returns its process id and a function that unmounts it.
func startMountPID(tb testing.TB, bin, repo, mnt string, flags ...string) (int, func()) {
	tb.Helper()
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, append(append([]string{"--repo", repo, "mount"}, flags...), mnt)...)
	var se bytes.Buffer
	cmd.Stderr = &se
	if f := os.Getenv("CAIRN_BENCH_REMOTE_MOUNTLOG"); f != "" {
		// the mount's stderr (e.g. GODEBUG=gctrace=1) appended to a file
		lf, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			tb.Fatal(err)
		}
		defer lf.Close()
		cmd.Stderr = lf
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if mi, ok, err := fusefs.FindMount(mnt); err == nil && ok && mi.FSType == "fuse.cairn" {
			break
		}
		select {
		case err := <-done:
			tb.Fatalf("cairn mount exited: %v: %s", err, se.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			tb.Fatalf("cairn mount did not mount: %s", se.String())
		}
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = fusefs.Unmount(mnt, true)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	tb.Cleanup(stop)
	return cmd.Process.Pid, stop
}

// procCPU is the user + system CPU time process pid has used so far
// (/proc/PID/stat, its threads included).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	cpu, _ := procStat(tb, pid)
	return cpu
}

// procStat is the user + system CPU time and the minor page faults of
// process pid so far (/proc/PID/stat, its threads included).
func procStat(tb testing.TB, pid int) (time.Duration, int64) {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in brackets.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// utime and stime are fields 14 and 15 (1-based) of the whole line:
	// 12 and 13 after the name (state is the first).
	minflt, err0 := strconv.ParseInt(f[7], 10, 64)
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		tb.Fatalf("parse /proc/%d/stat: %q", pid, s)
	}
	const ticks = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / ticks, minflt
}

package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/scalefixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// BenchmarkScale runs what an administrator runs on a repository of the
// size of a real site (docs/performance.md, "Scale"): 300 VMs with 40
// daily points each and the job log of every run, built once through the
// real writer and cached under /var/tmp/cairn-fixtures (see
// internal/scalefixture). CAIRN_BENCH_SCALE_VMS and _POINTS choose
// another size (the same operations at 100 and 1,000 VMs show how each
// grows).
//
//	CAIRN_BENCH_OUT=DIR go test -run '^$' -bench BenchmarkScale -benchtime 1x -timeout 60m ./test/
func BenchmarkScale(b *testing.B) {
	testutil.RequireTools(b, "mkfs.ext4", "cp", "find")
	spec := scalefixture.Default
	spec.VMs = benchEnvInt("CAIRN_BENCH_SCALE_VMS", spec.VMs)
	spec.Points = benchEnvInt("CAIRN_BENCH_SCALE_POINTS", spec.Points)
	ctx := context.Background()
	start := time.Now()
	fixture, err := scalefixture.Cached(ctx, spec, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("fixture %s ready after %s", fixture, time.Since(start).Round(time.Second))
	cairn := buildCairn(b)
	dir := benchDir(b, "scale")
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	// A copy whose delta images are hard links of the fixture's (nothing
	// below writes an image but prune and forget, which get a real copy).
	ro := filepath.Join(dir, "repo")
	copyRepo(b, fixture, ro, true)
	vm := scalefixture.VMName(spec.VMs / 2)
	point := scalefixture.PointTime(spec.VMs/2, spec.Points/2).Format("2006-01-02T15-04-05Z")
	const rounds = 3
	var rows []string
	add := func(name, what string, secs []float64, peak []float64) {
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |", name, what, spread(secs, "s"), spread(peak, "MiB")))
	}
	cli := func(name, what string, args ...string) {
		var secs, peaks []float64
		for range rounds {
			t0 := time.Now()
			_, _, peak := runCairnPeak(b, append([]string{"--repo", ro}, args...)...)
			secs = append(secs, time.Since(t0).Seconds())
			peaks = append(peaks, float64(peak)/(1<<20))
		}
		add(name, what, secs, peaks)
	}
	cli("cairn points", "every VM, table", "points")
	cli("cairn points --json", "every VM", "points", "--json")
	cli("cairn points --vm", "one VM", "points", "--vm", vm)
	cli("cairn jobs --history", fmt.Sprintf("%d jobs", spec.VMs*spec.Points), "jobs", "--history")
	cli("cairn status", "no server: VMs and last jobs", "status")
	cli("cairn search --all-points", "one VM's ext4, every point", "search", "--vm", scalefixture.VMName(0), "--all-points", "host*")
	cli("cairn verify --vm", "one VM: index and data", "verify", "--vm", vm)
	cli("cairn prune --dry-run", "every VM, keep 38", "prune", "--keep-last", fmt.Sprint(spec.Points-2), "--dry-run")
	// Prune and forget change the repository: each round gets a real copy.
	destructive := func(name, what string, args ...string) {
		var secs, peaks []float64
		for round := range rounds {
			rw := filepath.Join(dir, fmt.Sprintf("rw-%d", round))
			copyRepo(b, fixture, rw, false)
			t0 := time.Now()
			_, _, peak := runCairnPeak(b, append([]string{"--repo", rw}, args...)...)
			secs = append(secs, time.Since(t0).Seconds())
			peaks = append(peaks, float64(peak)/(1<<20))
			os.RemoveAll(rw)
		}
		add(name, what, secs, peaks)
	}
	destructive("cairn prune", fmt.Sprintf("every VM, keep %d (deletes %d points)", spec.Points-2, 2*spec.VMs), "prune", "--keep-last", fmt.Sprint(spec.Points-2))
	destructive("cairn forget", "one point", "forget", "--vm", vm, "--point", point)
	// The mount: start until the root lists, listings, and the memory of
	// the mount after a walk of every point's directory.
	var mStart, mRoot, mVM, mStat, mWalk, mRSS, mRSSWalk []float64
	for round := range rounds {
		mnt := filepath.Join(dir, fmt.Sprintf("mnt-%d", round))
		t0 := time.Now()
		pid, stop := startMountPID(b, cairn, ro, mnt)
		if _, err := os.ReadDir(mnt); err != nil {
			b.Fatal(err)
		}
		mStart = append(mStart, time.Since(t0).Seconds())
		mRoot = append(mRoot, secsOf(b, func() error { _, err := os.ReadDir(mnt); return err }))
		mVM = append(mVM, secsOf(b, func() error { return runQuiet("ls", "-l", filepath.Join(mnt, vm)) }))
		mStat = append(mStat, secsOf(b, func() error { _, err := os.Stat(filepath.Join(mnt, vm, point, "info.json")); return err }))
		mRSS = append(mRSS, rssMiB(b, pid))
		mWalk = append(mWalk, secsOf(b, func() error { return runQuiet("find", mnt, "-maxdepth", "4", "-not", "-path", "*/fs/*") }))
		mRSSWalk = append(mRSSWalk, rssMiB(b, pid))
		stop()
	}
	rows = append(rows,
		fmt.Sprintf("| cairn mount | start until the root lists | %s | %s |", spread(mStart, "s"), spread(mRSS, "MiB")),
		fmt.Sprintf("| ls of the mount root | %d VMs | %s | |", spec.VMs, spread(mRoot, "s")),
		fmt.Sprintf("| ls -l of a VM directory | %d points | %s | |", spec.Points, spread(mVM, "s")),
		fmt.Sprintf("| stat of a point's info.json | | %s | |", spread(mStat, "s")),
		fmt.Sprintf("| find over every point's directory | %d points, 4 levels | %s | %s after it |", spec.VMs*spec.Points, spread(mWalk, "s"), spread(mRSSWalk, "MiB")))
	// cairn serve: start, /api/v1/status.
	sStart, sStatus, sSize, sRSS := benchServe(b, cairn, ro, dir, rounds)
	rows = append(rows,
		fmt.Sprintf("| cairn serve | start until /healthz answers | %s | %s after the requests |", spread(sStart, "s"), spread(sRSS, "MiB")),
		fmt.Sprintf("| GET /api/v1/status | %d VMs, %.0f KiB | %s | |", spec.VMs, median(sSize)/1024, spread(sStatus, "s")))
	writeSection(b, "scale", fmt.Sprintf(`### Scale: a site of %d VMs x %d points

Measured %s on a repository of %d VMs with %d daily points each (one 4 MiB
disk: 2 MiB of data in the first point, 3 changed blocks in each later
one; 2 VMs hold a real ext4 filesystem) and the job log of every run
(%d jobs), built through the real writer (internal/scalefixture). %d
rounds each: median (min-max); peak RSS of the cairn process.

| operation | what | time | peak RSS |
|---|---|---|---|
%s
`, spec.VMs, spec.Points, time.Now().UTC().Format("2006-01-02"), spec.VMs, spec.Points, spec.VMs*spec.Points, rounds, strings.Join(rows, "\n")))
}

// copyRepo copies a repository; with linkImages its delta images are hard
// links (for uses that never write them).
func copyRepo(tb testing.TB, src, dst string, linkImages bool) {
	tb.Helper()
	os.RemoveAll(dst)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		tb.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		flags := "-a"
		if e.Name() == "images" && linkImages {
			flags = "-al"
		}
		if err := runQuiet("cp", flags, "--sparse=always", filepath.Join(src, e.Name()), dst+"/"); err != nil && !strings.Contains(err.Error(), "--sparse") {
			tb.Fatal(err)
		} else if err != nil {
			if err := runQuiet("cp", flags, filepath.Join(src, e.Name()), dst+"/"); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

func secsOf(tb testing.TB, f func() error) float64 {
	tb.Helper()
	t0 := time.Now()
	if err := f(); err != nil {
		tb.Fatal(err)
	}
	return time.Since(t0).Seconds()
}

// rssMiB is the resident memory of process pid now.
func rssMiB(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb float64
			fmt.Sscan(f[1], &kb)
			return kb / 1024
		}
	}
	return 0
}

// benchServe starts cairn serve on repo (a job with an RPO whose vCenter
// does not answer: it never backs up, its RPO checks and status run on
// the whole catalog) and times its start and /api/v1/status.
func benchServe(b *testing.B, cairn, repo, dir string, rounds int) (start, status, size, rss []float64) {
	cred := filepath.Join(dir, "vc-credentials")
	if err := os.WriteFile(cred, []byte("user\npassword\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`repository: %s
mount: %s
listen: 127.0.0.1:%d
vcenters:
  - name: prod
    url: https://127.0.0.1:9/sdk
    credentials: %s
jobs:
  - name: nightly
    vcenter: prod
    vms: ["vm-*"]
    schedule: "0 3 * * *"
    rpo: 24h
    retention: {keep_last: 38}
`, repo, filepath.Join(dir, "serve-mnt"), port, cred)), 0o600); err != nil {
		b.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for range rounds {
		cmd := exec.Command(cairn, "serve", "--config", cfg)
		var se bytes.Buffer
		cmd.Stderr = &se
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			resp, err := http.Get(base + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Since(t0) > 2*time.Minute {
				cmd.Process.Kill()
				b.Fatalf("cairn serve did not answer: %s", se.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		start = append(start, time.Since(t0).Seconds())
		token, err := os.ReadFile(filepath.Join(repo, "api-token"))
		if err != nil {
			b.Fatal(err)
		}
		var one []float64
		for range 10 {
			req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/status", nil)
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
			t1 := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("/api/v1/status: %s", resp.Status)
			}
			one = append(one, time.Since(t1).Seconds())
			size = append(size, float64(n))
		}
		status = append(status, median(one))
		rss = append(rss, rssMiB(b, cmd.Process.Pid))
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
	slices.Sort(size)
	return start, status, size, rss
}

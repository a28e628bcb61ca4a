package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/guestimg"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// BenchmarkBootTime is issue #15's boot benchmark: the BIOS test guest
// imported as a point and booted the way `cairn boot`/verify-boot do
// (in-process NBD export of the point, qcow2 overlay on it) against the
// same qemu command (boot.Start: same devices, firmware and overlay)
// whose overlay is backed by a plain raw copy of the disk. Time from
// start to the guest's marker on the serial console; alternating rounds,
// median ratio and range. Run alone with
//
//	go test -run '^$' -bench BenchmarkBootTime -benchtime 1x ./test/
func BenchmarkBootTime(b *testing.B) {
	ctx := context.Background()
	img, err := guestimg.Build(guestimg.Spec{Kind: guestimg.KindBIOS, Marker: "bench"})
	if err != nil {
		b.Skipf("test guest: %v", err)
	}
	dir := benchDir(b, "boot")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	raw := filepath.Join(dir, "plain.raw")
	sh(b, "cp", "--sparse=always", img, raw)
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := runQuiet(buildCairn(b), "--repo", repoDir, "import", "--vm", "bootbench", "--disk", "d0", img); err != nil {
		b.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer repo.Close()
	p, err := repo.ResolvePoint(ctx, "bootbench", "latest")
	if err != nil {
		b.Fatal(err)
	}
	pattern := regexp.MustCompile(regexp.QuoteMeta(guestimg.MarkerPrefix + " bench"))
	// run boots once and returns the time to the marker.
	run := func(fromPoint bool) time.Duration {
		run := filepath.Join(dir, "run")
		os.RemoveAll(run)
		opts := boot.Options{Firmware: "bios", Network: boot.NetworkNone, RunDir: run, Serial: filepath.Join(dir, "serial.log")}
		start := time.Now()
		var m *boot.Machine
		var stop func() error
		if fromPoint {
			pm, err := boot.StartPoint(ctx, repo, p, opts)
			if err != nil {
				b.Fatal(err)
			}
			m, stop = pm.Machine, pm.Stop
		} else {
			opts.Disks = []boot.Disk{{Name: "d0", Backing: raw}}
			m, err = boot.Start(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			stop = m.Stop
		}
		res := boot.Verify(ctx, m, boot.VerifyOptions{Timeout: 5 * time.Minute, Pattern: pattern, Interval: 100 * time.Millisecond}) // serial read every 0.1 s, no screenshots
		took := time.Since(start)
		stop()
		if res.Verdict != boot.VerdictBooted {
			b.Fatalf("boot (from point %v): %s: %s", fromPoint, res.Verdict, res.Reason)
		}
		return took
	}
	const rounds = 3
	tPlain, tCairn, ratios := alternateRounds(rounds, func() time.Duration { return run(false) }, func() time.Duration { return run(true) })
	writeSection(b, "40-boot", fmt.Sprintf(`## Booting a point (cairn boot, verify-boot)

One run on %s, qemu with %s. The BIOS test guest (internal/guestimg, %d MiB)
imported as a point and booted as `+"`cairn verify-boot`"+` does (an in-process NBD
export of the point under a qcow2 overlay), against the same qemu command
whose overlay is backed by a plain raw copy of the disk; time from start
to the guest's marker on the serial console (read every 0.1 s), %d
alternating rounds.

| | time to marker, median (range) |
|---|---|
| plain raw copy | %s |
| cairn point | %s |
| **ratio** (plain time / cairn time; 1.00 = as fast) | **%s** |
`, time.Now().UTC().Format("2006-01-02"), accelName(), guestimg.Size>>20, rounds,
		spread(tPlain, "s"), spread(tCairn, "s"), spread(ratios, "x")))
}

// alternateRounds times ref and ours in turn (ref first in even rounds)
// and returns both times in seconds and the ratios ref/ours.
func alternateRounds(rounds int, ref, ours func() time.Duration) (tRef, tOurs, ratios []float64) {
	for i := range rounds {
		var r, o time.Duration
		if i%2 == 0 {
			r, o = ref(), ours()
		} else {
			o, r = ours(), ref()
		}
		tRef = append(tRef, r.Seconds())
		tOurs = append(tOurs, o.Seconds())
		ratios = append(ratios, r.Seconds()/o.Seconds())
	}
	return tRef, tOurs, ratios
}

func accelName() string {
	a, _ := boot.DetectAccel()
	return a
}

// BenchmarkNBDExport is issue #15's export benchmark: nbdcopy of a 1 GiB
// point (512 MiB of random data in 16 MiB runs, the rest holes) to null:
// from `cairn nbd-export` against `qemu-nbd -r` serving a raw copy made by
// `cairn export`; page cache dropped before every copy, alternating
// rounds, median ratio and range. Run alone with
//
//	go test -run '^$' -bench BenchmarkNBDExport -benchtime 1x ./test/
func BenchmarkNBDExport(b *testing.B) {
	testutil.RequireTools(b, "nbdcopy", "qemu-nbd")
	ctx := context.Background()
	dir := benchDir(b, "nbdexport")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.img")
	makeImage(b, img, 1<<30)
	for off := int64(0); off < 1<<30; off += 32 << 20 {
		sh(b, "dd", "if=/dev/urandom", "of="+img, "bs=16M", "count=1", fmt.Sprintf("seek=%d", off/(16<<20)), "conv=notrunc", "status=none")
	}
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	cairn := buildCairn(b)
	if err := runQuiet(cairn, "--repo", repoDir, "import", "--vm", "nbdbench", "--disk", "d0", img); err != nil {
		b.Fatal(err)
	}
	os.Remove(img)
	exported := filepath.Join(dir, "exported.raw")
	if err := runQuiet(cairn, "--repo", repoDir, "export", "--vm", "nbdbench", "--disk", "d0", exported); err != nil {
		b.Fatal(err)
	}
	serve := func(name string, args ...string) (string, func()) {
		sock := filepath.Join(dir, filepath.Base(name)+".sock")
		os.Remove(sock)
		cmd := exec.Command(name, append(args, sock)...)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for i := 0; ; i++ {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if i > 300 {
				cmd.Process.Kill()
				b.Fatalf("%s: no socket", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return "nbd+unix:///?socket=" + sock, func() { cmd.Process.Kill(); cmd.Wait() }
	}
	cairnURI, stopCairn := serve(cairn, "--repo", repoDir, "nbd-export", "--vm", "nbdbench", "--disk", "d0", "--socket")
	defer stopCairn()
	qemuURI, stopQemu := serve("qemu-nbd", "-r", "-t", "-e", "4", "-f", "raw", exported, "-k")
	defer stopQemu()
	copyOnce := func(uri string) time.Duration {
		dropPageCache()
		d, err := timeIt(func() error { return runQuiet("nbdcopy", uri, "null:") })
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	copyOnce(cairnURI) // warm both servers' code paths once
	copyOnce(qemuURI)
	const rounds = 5
	tq, tc, ratios := alternateRounds(rounds, func() time.Duration { return copyOnce(qemuURI) }, func() time.Duration { return copyOnce(cairnURI) })
	writeSection(b, "41-nbd-export", fmt.Sprintf(`## Serving a point over NBD (cairn nbd-export)

One run on %s. `+"`nbdcopy URI null:`"+` of a 1 GiB point (512 MiB of random
data in 16 MiB runs, the rest holes) from `+"`cairn nbd-export --socket`"+`
against `+"`qemu-nbd -r -t -e 4`"+` serving a raw copy of the same disk made by
`+"`cairn export`"+`; page cache dropped before every copy, %d alternating rounds.

| | nbdcopy time, median (range) |
|---|---|
| qemu-nbd on the exported copy | %s |
| cairn nbd-export | %s |
| **ratio** (qemu-nbd time / cairn time; 1.00 = as fast) | **%s** |
`, time.Now().UTC().Format("2006-01-02"), rounds, spread(tq, "s"), spread(tc, "s"), spread(ratios, "x")))
}

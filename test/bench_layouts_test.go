package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/mdfixture"
)

// BenchmarkLayoutReads is issue #18's performance item: a 256 MiB file
// (random bytes) on a linear LV, on an MD raid1 (ext4 on both) and on
// btrfs (uncompressed) read through fs/, against the same file on a plain
// ext4 partition through fs/ and against a kernel mount of a read-only
// loop device over the same bytes of the same disk image. Cold reads (sync
// and drop_caches before each), dd with 1 MiB reads on both sides, a
// warm-up round and then seven rounds that each read every layout both
// ways in a rotated order (CAIRN_BENCH_ROUNDS sets another number); the
// median ratio within a round and the range are reported, the server's
// CPU per read is logged. CAIRN_BENCH_CPUPROFILE writes a CPU profile of
// the rounds (the FUSE server runs in the benchmark's process);
// CAIRN_BENCH_OLDREF=1 also times a loop mount of the separate filesystem
// image (the reference used before) and logs the ratio. Run alone with
//
//	go test -run '^$' -bench BenchmarkLayoutReads -benchtime 1x ./test/
func BenchmarkLayoutReads(b *testing.B) {
	ctx := context.Background()
	dir := benchDir(b, "layouts")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	sh(b, "dd", "if=/dev/urandom", "of="+filepath.Join(src, "big.bin"), "bs=1M", "count=256", "status=none")
	const fsSize = 300 * mib
	ext4 := func(name string, size int64) string {
		img := filepath.Join(dir, name+".ext4")
		sh(b, "mkfs.ext4", "-q", "-F", "-L", name, "-d", src, img, fmt.Sprintf("%dK", size/1024))
		return img
	}
	// Each layout's kernel reference is a read-only loop device over the
	// very bytes cairn imported: the disk image at the filesystem's offset
	// (the partition, the LV's segment, the MD member's data area), not a
	// separate copy of the filesystem image.
	type layout struct {
		name, fsImg, path string // path below <vm>/latest/fs
		disks             []string
		refImg            string // disk image the kernel reference reads
		refOff, refLen    int64  // the filesystem's bytes in refImg (0: to its end)
	}
	var ls []layout

	// Plain ext4 partition.
	plainFS := ext4("plain", fsSize)
	plain := filepath.Join(dir, "plain.img")
	makeImage(b, plain, fsSize+2*mib)
	sh(b, "sgdisk", "-n", "1:2048:+300M", plain)
	writeAt(b, plain, plainFS, mib)
	ls = append(ls, layout{"ext4 partition", plainFS, "d0/p1", []string{plain}, plain, mib, fsSize})

	// Linear LV on a whole-disk PV.
	pv := filepath.Join(dir, "pv.img")
	makeImage(b, pv, fsSize+16*mib)
	offs := lvmfixture.Simple(b, dir, pv, "vgbench", []string{"data"}, []int{300})
	lvFS := ext4("lv", fsSize)
	writeAt(b, pv, lvFS, offs["data"])
	ls = append(ls, layout{"linear LV", lvFS, "lvm/vgbench/data", []string{pv}, pv, offs["data"], fsSize})

	// MD raid1 of two whole disks.
	spec := mdfixture.Spec{Version: "1.2", Level: mdfixture.Level1, Members: 2, MemberLen: fsSize + 2*mib, Name: "bench"}
	mdFS := ext4("md", spec.ArraySize())
	data, err := os.ReadFile(mdFS)
	if err != nil {
		b.Fatal(err)
	}
	mdDir := filepath.Join(dir, "md")
	os.Mkdir(mdDir, 0o755)
	members := spec.Build(b, mdDir, data)
	mdOff, _ := spec.DataArea()
	ls = append(ls, layout{"MD raid1", mdFS, "md/bench", members, members[0], mdOff, spec.ArraySize()})
	data = nil

	// btrfs, uncompressed, on a whole disk.
	btrfsFS := filepath.Join(dir, "btrfs.img")
	makeImage(b, btrfsFS, fsSize)
	sh(b, "mkfs.btrfs", "-q", "-r", src, btrfsFS)
	ls = append(ls, layout{"btrfs", btrfsFS, "d0/whole", []string{btrfsFS}, btrfsFS, 0, 0})

	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	for i, l := range ls {
		args := []string{"--repo", repoDir, "import", "--vm", fmt.Sprintf("l%d", i)}
		for j := range l.disks {
			args = append(args, "--disk", fmt.Sprintf("d%d", j))
		}
		if err := runQuiet(buildCairn(b), append(args, l.disks...)...); err != nil {
			b.Fatal(err)
		}
	}
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer repo.Close()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{FSProvider: guest.Provider(nil), VolumeProvider: guest.VolumeProvider(nil)})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Unmount(true, 5*time.Second)
	// One read tool and request size for both sides: dd with 1 MiB
	// reads (cat would pick its buffer from st_blksize, which differs
	// between the FUSE mount and ext4).
	// cpu is the CPU time (user and system) this process spent during
	// the last read: the FUSE server's whole cost of a read through fs/.
	// ddCPU is the reading process's own (dd's, kernel time included):
	// on fs/ it pays the FUSE page cache's per-page work, which a kernel
	// mount's reader does not.
	var cpu, ddCPU time.Duration
	coldRead := func(path string) time.Duration {
		dropPageCache()
		before := selfCPU()
		start := time.Now()
		cmd := exec.Command("dd", "if="+path, "of=/dev/null", "bs=1M", "status=none")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("dd %s: %v %s", path, err, out)
		}
		d := time.Since(start)
		cpu = selfCPU() - before
		ddCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return d
	}
	ours := func(i int) string {
		return filepath.Join(mnt, fmt.Sprintf("l%d", i), "latest", "fs", ls[i].path, "big.bin")
	}
	want := mountSHA256File(b, filepath.Join(src, "big.bin"))
	for i := range ls {
		if got := mountSHA256File(b, ours(i)); got != want {
			b.Fatalf("%s: big.bin through fs/ differs from the source", ls[i].name)
		}
	}
	// Kernel references, all mounted for the whole run. CAIRN_BENCH_OLDREF=1
	// also reads the file from a loop mount of the separate filesystem
	// image (the reference before 2026-12-06's fix), logged only.
	oldRef := os.Getenv("CAIRN_BENCH_OLDREF") == "1"
	kern := make([]string, len(ls))
	old := make([]string, len(ls))
	for i, l := range ls {
		args := []string{"--find", "--show", "--read-only", "--offset", fmt.Sprint(l.refOff)}
		if l.refLen > 0 {
			args = append(args, "--sizelimit", fmt.Sprint(l.refLen))
		}
		out, err := exec.Command("losetup", append(args, l.refImg)...).CombinedOutput()
		if err != nil {
			b.Fatalf("losetup %s: %v %s", l.refImg, err, out)
		}
		dev := strings.TrimSpace(string(out))
		defer exec.Command("losetup", "-d", dev).Run()
		kern[i] = filepath.Join(dir, fmt.Sprintf("k%d", i))
		os.Mkdir(kern[i], 0o755)
		fsType := "ext4"
		if l.name == "btrfs" {
			fsType = "btrfs"
		}
		if err := runQuiet("mount", "-t", fsType, "-o", "ro", dev, kern[i]); err != nil {
			b.Fatal(err)
		}
		defer runQuiet("umount", kern[i])
		if got := mountSHA256File(b, filepath.Join(kern[i], "big.bin")); got != want {
			b.Fatalf("%s: big.bin on the kernel reference differs from the source", l.name)
		}
		if oldRef {
			old[i] = filepath.Join(dir, fmt.Sprintf("o%d", i))
			os.Mkdir(old[i], 0o755)
			if err := runQuiet("mount", "-o", "loop,ro", l.fsImg, old[i]); err != nil {
				b.Fatal(err)
			}
			defer runQuiet("umount", old[i])
		}
	}
	rounds := 7
	fmt.Sscan(os.Getenv("CAIRN_BENCH_ROUNDS"), &rounds)
	if prof := os.Getenv("CAIRN_BENCH_CPUPROFILE"); prof != "" {
		pf, err := os.Create(prof)
		if err != nil {
			b.Fatal(err)
		}
		defer pf.Close()
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	// Every round reads every layout through fs/ and through the kernel,
	// in an order rotated (and reversed every other round) so no side
	// or layout always follows the same read; one warm-up round first.
	type read struct {
		layout int
		kind   int // 0 fs/, 1 kernel, 2 old reference
	}
	var order []read
	for i := range ls {
		order = append(order, read{i, 0}, read{i, 1})
		if oldRef {
			order = append(order, read{i, 2})
		}
	}
	path := func(r read) string {
		switch r.kind {
		case 0:
			return ours(r.layout)
		case 1:
			return filepath.Join(kern[r.layout], "big.bin")
		}
		return filepath.Join(old[r.layout], "big.bin")
	}
	times := make([][3][]float64, len(ls))  // seconds per layout and kind
	cpus := make([][]float64, len(ls))      // server CPU seconds per fs/ read
	ddCPUs := make([][2][]float64, len(ls)) // reader CPU seconds per fs/ and kernel read
	for round := -1; round < rounds; round++ {
		seq := slices.Clone(order)
		if round >= 0 {
			k := (round * 3) % len(seq)
			seq = append(seq[k:], seq[:k]...)
			if round%2 == 1 {
				slices.Reverse(seq)
			}
		}
		for _, r := range seq {
			d := coldRead(path(r)).Seconds()
			if round >= 0 {
				times[r.layout][r.kind] = append(times[r.layout][r.kind], d)
				if r.kind == 0 {
					cpus[r.layout] = append(cpus[r.layout], cpu.Seconds())
				}
				if r.kind < 2 {
					ddCPUs[r.layout][r.kind] = append(ddCPUs[r.layout][r.kind], ddCPU.Seconds())
				}
			}
		}
	}
	ratios := func(num, den []float64) []float64 {
		var out []float64
		for j := range num {
			out = append(out, num[j]/den[j])
		}
		sort.Float64s(out)
		return out
	}
	rows, cpuRows := "", ""
	for i, l := range ls {
		vsPlain := ratios(times[0][0], times[i][0])
		vsKernel := ratios(times[i][1], times[i][0])
		var mean float64
		for _, t := range times[i][0] {
			mean += t / float64(rounds)
		}
		plainCell := fmt.Sprintf("**%.2fx** (%.2f-%.2f)", vsPlain[rounds/2], vsPlain[0], vsPlain[rounds-1])
		if i == 0 {
			plainCell = "1 (itself)"
		}
		kMed := slices.Clone(times[i][1])
		sort.Float64s(kMed)
		rows += fmt.Sprintf("| %s | %.0f MiB/s | %.0f MiB/s | %s | **%.2fx** (%.2f-%.2f) |\n", l.name, 256/mean,
			256/kMed[rounds/2], plainCell, vsKernel[rounds/2], vsKernel[0], vsKernel[rounds-1])
		if oldRef {
			vsOld := ratios(times[i][2], times[i][0])
			kNew := ratios(times[i][1], times[i][2])
			b.Logf("%s: vs separate image %.2fx (%.2f-%.2f); same-bytes kernel / separate-image kernel time %.2fx (%.2f-%.2f)",
				l.name, vsOld[rounds/2], vsOld[0], vsOld[rounds-1], kNew[rounds/2], kNew[0], kNew[rounds-1])
		}
		cpuRows += fmt.Sprintf("| %s | %s | %s | %s |\n", l.name, medRange(cpus[i]), medRange(ddCPUs[i][0]), medRange(ddCPUs[i][1]))
		b.Logf("%s: fs/ s %v (server CPU s %v, reader CPU s %v) kernel s %v (reader CPU s %v)", l.name, fmtSecs(times[i][0]), fmtSecs(cpus[i]),
			fmtSecs(ddCPUs[i][0]), fmtSecs(times[i][1]), fmtSecs(ddCPUs[i][1]))
	}
	writeSection(b, "31-layouts", fmt.Sprintf(`## Volume layouts in the mount (fs/lvm, fs/md, btrfs)

One run on %s. A 256 MiB file of random bytes on each layout, imported as
a recovery point and read with dd (1 MiB reads) through fs/ and from a
kernel mount of a read-only loop device over the same bytes of the same
disk image (the partition, the LV's segment, the MD member's data area,
the whole btrfs disk); sync and page cache dropped before every read. %d
rounds after a warm-up round, each reading every layout both ways in a
rotated order; median throughput ratio within a round, with the range.

| layout | through fs/ (mean) | kernel (median) | vs plain ext4 partition through fs/ (target >= 0.9x) | vs kernel mount of the same filesystem (target >= 0.7x) |
|---|---|---|---|---|
%s
CPU seconds per cold read of the 256 MiB file, median (range): the FUSE
server's (user and system, the benchmark's process) and the reading
process's (dd's, its kernel work included) through fs/, and dd's on the
kernel mount (whose loop device's work runs in kernel threads, not
counted).

| layout | server, fs/ | reader, fs/ | reader, kernel mount |
|---|---|---|---|
%s`, time.Now().UTC().Format("2006-01-02"), rounds, strings.TrimSpace(rows)+"\n", strings.TrimSpace(cpuRows)+"\n"))
}

// medRange is "median (min-max)" of seconds.
func medRange(xs []float64) string {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f (%.3f-%.3f)", s[len(s)/2], s[0], s[len(s)-1])
}

func fmtSecs(ts []float64) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, fmt.Sprintf("%.2f", t))
	}
	return strings.Join(parts, " ")
}

// selfCPU is the user and system CPU time of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

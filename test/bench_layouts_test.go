package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
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
// ext4 partition through fs/ and against a kernel loop mount of the same
// filesystem image. Cold reads, five alternating rounds
// (CAIRN_BENCH_ROUNDS sets another number); the median ratio and the
// range are reported. CAIRN_BENCH_CPUPROFILE writes a CPU profile of the
// rounds (the FUSE server runs in the benchmark's process). Run alone with
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
	type layout struct {
		name, fsImg, path string // path below <vm>/latest/fs
		disks             []string
	}
	var ls []layout

	// Plain ext4 partition.
	plainFS := ext4("plain", fsSize)
	plain := filepath.Join(dir, "plain.img")
	makeImage(b, plain, fsSize+2*mib)
	sh(b, "sgdisk", "-n", "1:2048:+300M", plain)
	writeAt(b, plain, plainFS, mib)
	ls = append(ls, layout{"ext4 partition", plainFS, "d0/p1", []string{plain}})

	// Linear LV on a whole-disk PV.
	pv := filepath.Join(dir, "pv.img")
	makeImage(b, pv, fsSize+16*mib)
	offs := lvmfixture.Simple(b, dir, pv, "vgbench", []string{"data"}, []int{300})
	lvFS := ext4("lv", fsSize)
	writeAt(b, pv, lvFS, offs["data"])
	ls = append(ls, layout{"linear LV", lvFS, "lvm/vgbench/data", []string{pv}})

	// MD raid1 of two whole disks.
	spec := mdfixture.Spec{Version: "1.2", Level: mdfixture.Level1, Members: 2, MemberLen: fsSize + 2*mib, Name: "bench"}
	mdFS := ext4("md", spec.ArraySize())
	data, err := os.ReadFile(mdFS)
	if err != nil {
		b.Fatal(err)
	}
	mdDir := filepath.Join(dir, "md")
	os.Mkdir(mdDir, 0o755)
	ls = append(ls, layout{"MD raid1", mdFS, "md/bench", spec.Build(b, mdDir, data)})
	data = nil

	// btrfs, uncompressed, on a whole disk.
	btrfsFS := filepath.Join(dir, "btrfs.img")
	makeImage(b, btrfsFS, fsSize)
	sh(b, "mkfs.btrfs", "-q", "-r", src, btrfsFS)
	ls = append(ls, layout{"btrfs", btrfsFS, "d0/whole", []string{btrfsFS}})

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
	coldRead := func(path string) time.Duration {
		dropPageCache()
		start := time.Now()
		if out, err := exec.Command("sh", "-c", "cat '"+path+"' > /dev/null").CombinedOutput(); err != nil {
			b.Fatalf("cat %s: %v %s", path, err, out)
		}
		return time.Since(start)
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
	rounds := 5
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
	rows := ""
	for i, l := range ls {
		kmnt := filepath.Join(dir, fmt.Sprintf("k%d", i))
		os.Mkdir(kmnt, 0o755)
		if err := runQuiet("mount", "-o", "loop,ro", l.fsImg, kmnt); err != nil {
			b.Fatal(err)
		}
		var vsPlain, vsKernel []float64
		var tOurs time.Duration
		for range rounds {
			base := coldRead(ours(0))
			o := coldRead(ours(i))
			k := coldRead(filepath.Join(kmnt, "big.bin"))
			tOurs += o / time.Duration(rounds)
			vsPlain = append(vsPlain, base.Seconds()/o.Seconds())
			vsKernel = append(vsKernel, k.Seconds()/o.Seconds())
		}
		runQuiet("umount", kmnt)
		sort.Float64s(vsPlain)
		sort.Float64s(vsKernel)
		plainCell := fmt.Sprintf("**%.2fx** (%.2f-%.2f)", vsPlain[rounds/2], vsPlain[0], vsPlain[rounds-1])
		if i == 0 {
			plainCell = "1 (itself)"
		}
		rows += fmt.Sprintf("| %s | %.0f MiB/s | %s | **%.2fx** (%.2f-%.2f) |\n", l.name, 256/tOurs.Seconds(),
			plainCell, vsKernel[rounds/2], vsKernel[0], vsKernel[rounds-1])
	}
	writeSection(b, "31-layouts", fmt.Sprintf(`## Volume layouts in the mount (fs/lvm, fs/md, btrfs)

One run on %s. A 256 MiB file of random bytes on each layout, imported as
a recovery point and read with cat through fs/, page cache dropped before
every read; %d alternating rounds (plain ext4 through fs/, the layout
through fs/, a kernel loop mount of the layout's filesystem image), median
throughput ratio with the range.

| layout | through fs/ (mean) | vs plain ext4 partition through fs/ (target >= 0.9x) | vs kernel mount of the same filesystem (target >= 0.7x) |
|---|---|---|---|
%s`, time.Now().UTC().Format("2006-01-02"), rounds, strings.TrimSpace(rows)+"\n"))
}

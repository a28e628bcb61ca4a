package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// diffBenchChanges is what the second generation of the real root tree
// changes through a kernel mount: one byte of every 100th file over
// 1 KiB rewritten in place (same size), every 97th file touched, 100 new
// 4 KiB random files, five documentation directories deleted.
const diffBenchChanges = `set -e
find . -type f -size +1k | awk 'NR%100==0' | while read -r f; do printf X | dd of="$f" bs=1 count=1 conv=notrunc status=none; done
find . -type f | awk 'NR%97==0' | while read -r f; do touch "$f"; done
mkdir -p newstuff
for i in $(seq 100); do head -c 4096 /dev/urandom > newstuff/f$i; done
find usr/share/doc -mindepth 1 -maxdepth 1 -type d | sort | head -5 | xargs rm -rf
`

// buildDiffFixture is two points of VM root-ext4 in a repository of its
// own: the real root tree's ext4 image (realRootFixture) and a copy of it
// changed through a kernel mount (diffBenchChanges). Kept under
// $CAIRN_FIXTURES beside the real root fixture (about 700 MiB).
func buildDiffFixture(b *testing.B) (repo, img1, img2 string) {
	b.Helper()
	f := buildRealRootFixture(b)
	root := filepath.Dir(filepath.Dir(f.repo))
	dir := filepath.Join(root, "pointdiff-v1")
	repo, img1, img2 = filepath.Join(dir, "repo"), f.imgs["ext4"], filepath.Join(dir, "ext4-2.img")
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return
	}
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	sh(b, "cp", "--sparse=always", img1, img2)
	m := filepath.Join(dir, "m")
	um := kernelMount(b, img2, m, "loop")
	cmd := exec.Command("bash", "-c", diffBenchChanges)
	cmd.Dir = m
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("changes: %v\n%s", err, out)
	}
	um()
	mustCairn(b, "--repo", repo, "init")
	for i, img := range []string{img1, img2} {
		mustCairn(b, "--repo", repo, "import", "--vm", "root-ext4", "--disk", "sda", "--time", fmt.Sprintf("2026-11-0%dT01:00:00Z", i+1), img)
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return
}

// BenchmarkDiff compares `cairn diff` of two points of the real root
// tree (ext4) with `rsync -n -a -i -c --delete` between kernel loop
// mounts of the two images, cold: every round drops the page cache, the
// order alternates. Both find the same-size content changes (rsync by
// checksumming every file on both sides, cairn by reading only the files
// whose blocks changed). Run by `make bench`:
//
//	go test -run '^$' -bench BenchmarkDiff -benchtime 1x ./test/
//
// CAIRN_BENCH_ROUNDS sets the rounds (default 5).
func BenchmarkDiff(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireTools(b, "rsync", "mount", "umount")
	repo, img1, img2 := buildDiffFixture(b)
	bin := buildCairn(b)
	dir := benchDir(b, "pointdiff")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	m1, m2 := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	rounds := 5
	fmt.Sscan(os.Getenv("CAIRN_BENCH_ROUNDS"), &rounds)
	var ours, ref, ratios []float64
	var rsyncLines, cairnLines int
	var stats string
	for i := 0; i < rounds; i++ {
		timeOurs := func() time.Duration {
			dropPageCache()
			start := time.Now()
			out, err := exec.Command(bin, "--repo", repo, "diff", "--vm", "root-ext4", "--from", "1", "--to", "2").Output()
			if err != nil {
				b.Fatalf("cairn diff: %v", err)
			}
			d := time.Since(start)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			cairnLines, stats = len(lines)-3, lines[len(lines)-1] // header, fs line, stats line
			return d
		}
		timeRef := func() time.Duration {
			u1 := kernelMount(b, img1, m1, "loop,ro,noload")
			u2 := kernelMount(b, img2, m2, "loop,ro,noload")
			defer u1()
			defer u2()
			dropPageCache()
			start := time.Now()
			out, err := exec.Command("rsync", "-n", "-a", "-i", "-c", "--delete", m2+"/", m1+"/").Output()
			if err != nil {
				b.Fatalf("rsync: %v", err)
			}
			rsyncLines = len(strings.Split(strings.TrimSpace(string(out)), "\n"))
			return time.Since(start)
		}
		var to, tr time.Duration
		if i%2 == 0 {
			tr, to = timeRef(), timeOurs()
		} else {
			to, tr = timeOurs(), timeRef()
		}
		ours, ref, ratios = append(ours, to.Seconds()), append(ref, tr.Seconds()), append(ratios, tr.Seconds()/to.Seconds())
		b.Logf("round %d: cairn %.2f s, rsync %.2f s", i, to.Seconds(), tr.Seconds())
	}
	b.Logf("cairn: %d change lines; rsync: %d lines; %s", cairnLines, rsyncLines, stats)
	writeSection(b, "33-diff", fmt.Sprintf(`## cairn diff between two points (real root tree)

One run on %s. Two points of the real root tree's ext4 image (the
BenchmarkGuestRootTree fixture): the second generation changed through a
kernel mount (one byte of every 100th file over 1 KiB rewritten in place,
same size; every 97th file touched; 100 files added; 5 directories of
/usr/share/doc deleted). `+"`cairn diff`"+` (%d change lines) against
`+"`rsync -n -a -i -c --delete`"+` (%d lines) between kernel loop mounts of
the two images; both must read content to find same-size changes (rsync
checksums every file on both sides, cairn reads only the bytes of files
in repository blocks that changed: %s). Every round drops the page cache;
the order alternates; %d rounds, median and range. Ratio = rsync time /
cairn time.

| cairn diff | rsync -n -aic (kernel mounts) | ratio (range) |
|---|---|---|
| %s | %s | **%.2fx** (%.2f-%.2f) |
`, time.Now().UTC().Format("2006-01-02"), cairnLines, rsyncLines, strings.TrimPrefix(stats, "# "), rounds,
		spread(ours, "s"), spread(ref, "s"), median(ratios), slices.Min(ratios), slices.Max(ratios)))
}

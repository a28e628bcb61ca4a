package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// realRootFixture is a repository holding a real root tree (the one
// TestRealRootTree compares) as ext4, XFS and NTFS images, one VM each,
// with the images beside it for the kernel's (and ntfs-3g's) mounts. It is
// built once and kept under $CAIRN_FIXTURES (default
// /var/tmp/cairn-fixtures): about 3 GiB of sparse images.
type realRootFixture struct {
	repo string
	imgs map[string]string // ext4, xfs, ntfs
}

const realRootFixtureVersion = "realroot-v1"

func buildRealRootFixture(b *testing.B) realRootFixture {
	b.Helper()
	testutil.RequireTools(b, "mkfs.ext4", "mkfs.xfs", "mkntfs", "ntfs-3g", "setcap", "setfacl", "tar")
	root := os.Getenv("CAIRN_FIXTURES")
	if root == "" {
		root = "/var/tmp/cairn-fixtures"
	}
	dir := filepath.Join(root, realRootFixtureVersion)
	f := realRootFixture{repo: filepath.Join(dir, "repo"), imgs: map[string]string{}}
	for _, n := range []string{"ext4", "xfs", "ntfs"} {
		f.imgs[n] = filepath.Join(dir, n+".img")
	}
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return f
	}
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	stage := filepath.Join(dir, "stage")
	buildRealRootStage(b, stage)
	defer os.RemoveAll(stage)
	sh(b, "mkfs.ext4", "-q", "-F", "-d", stage, f.imgs["ext4"], "1500M")
	makeImage(b, f.imgs["xfs"], 1500*mib)
	sh(b, "mkfs.xfs", "-q", "-f", f.imgs["xfs"])
	m := filepath.Join(dir, "fill")
	os.Mkdir(m, 0o755)
	sh(b, "mount", "-o", "loop", f.imgs["xfs"], m)
	sh(b, "cp", "-a", stage+"/.", m+"/")
	sh(b, "umount", m)
	// NTFS holds the files, directories and symlinks (no device nodes:
	// cp -r would read them).
	makeImage(b, f.imgs["ntfs"], 1500*mib)
	sh(b, "mkntfs", "-q", "-Q", "-F", "-L", "realroot", f.imgs["ntfs"])
	sh(b, "ntfs-3g", f.imgs["ntfs"], m)
	sh(b, "cp", "-r", "--preserve=timestamps", filepath.Join(stage, "etc"), filepath.Join(stage, "usr"), m+"/")
	sh(b, "umount", m)
	mustCairn(b, "--repo", f.repo, "init")
	for _, n := range []string{"ext4", "xfs", "ntfs"} {
		mustCairn(b, "--repo", f.repo, "import", "--vm", "root-"+n, "--disk", "sda", f.imgs[n])
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkGuestRootTree compares `tar cf - .` and `find .` of a real root
// tree through the mount's fs/ with the kernel's loop mount of the same
// image (ntfs-3g for NTFS), cold: every round drops the page cache and
// mounts both anew, and the two alternate which goes first. It reports the
// median ratio (reference time / cairn time, so 1.0 is as fast) and the
// spread. Run by `make bench`:
//
//	go test -run '^$' -bench BenchmarkGuestRootTree -benchtime 1x ./test/
//
// CAIRN_BENCH_ROUNDS sets the rounds (default 5); CAIRN_BENCH_CPUPROFILE
// writes a CPU profile of the cairn side (this process serves the mount);
// CAIRN_BENCH_FS and CAIRN_BENCH_OPS pick filesystems and commands (e.g.
// "ext4 xfs", "find"; default all).
func BenchmarkGuestRootTree(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireFUSE(b)
	ctx := context.Background()
	f := buildRealRootFixture(b)
	repo, err := blockmap.Open(ctx, f.repo, blockmap.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer repo.Close()
	dir := benchDir(b, "guestroot")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	mnt, kmnt := filepath.Join(dir, "mnt"), filepath.Join(dir, "kernel")
	os.Mkdir(mnt, 0o755)
	os.Mkdir(kmnt, 0o755)
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
	run := func(script string) time.Duration {
		start := time.Now()
		if out, err := exec.Command("bash", "-o", "pipefail", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v %s", script, err, out)
		}
		return time.Since(start)
	}
	ops := []struct{ name, script string }{
		{"tar", "tar cf - . | cat > /dev/null"},
		{"find", "find . > /dev/null"},
	}
	type result struct{ ours, ref, ratios []float64 }
	res := map[string]*result{}
	var rows []string
	pick := func(env string, all []string) []string {
		if v := strings.Fields(os.Getenv(env)); len(v) > 0 {
			return v
		}
		return all
	}
	for _, fsName := range pick("CAIRN_BENCH_FS", []string{"ext4", "xfs", "ntfs"}) {
		kernelMount := func() {
			if fsName == "ntfs" {
				sh(b, "ntfs-3g", "-o", "ro", f.imgs[fsName], kmnt)
			} else {
				sh(b, "mount", "-o", "loop,ro", f.imgs[fsName], kmnt)
			}
		}
		for _, op := range ops {
			if !slices.Contains(pick("CAIRN_BENCH_OPS", []string{"tar", "find"}), op.name) {
				continue
			}
			r := &result{}
			res[fsName+op.name] = r
			for i := 0; i < rounds; i++ {
				srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{FSProvider: guest.Provider(nil)})
				if err != nil {
					b.Fatal(err)
				}
				kernelMount()
				ours := filepath.Join(mnt, "root-"+fsName, "latest", "fs", "sda", "whole")
				var to, tk time.Duration
				timeOurs := func() { dropPageCache(); to = run("cd '" + ours + "' && " + op.script) }
				timeKernel := func() { dropPageCache(); tk = run("cd '" + kmnt + "' && " + op.script) }
				if i%2 == 0 {
					timeKernel()
					timeOurs()
				} else {
					timeOurs()
					timeKernel()
				}
				runQuiet("umount", kmnt)
				if err := srv.Unmount(true, 10*time.Second); err != nil {
					b.Fatal(err)
				}
				r.ours = append(r.ours, to.Seconds())
				r.ref = append(r.ref, tk.Seconds())
				r.ratios = append(r.ratios, tk.Seconds()/to.Seconds())
			}
			ref := "kernel loop mount"
			if fsName == "ntfs" {
				ref = "ntfs-3g on a loop file"
			}
			rows = append(rows, fmt.Sprintf("| %s | `%s` | %s | %s | %s | **%.2fx** (%.2f-%.2f) |", fsName, op.script,
				spread(r.ours, "s"), spread(r.ref, "s"), ref, median(r.ratios), slices.Min(r.ratios), slices.Max(r.ratios)))
			b.Logf("%s %s: cairn %v ref %v ratios %.2f", fsName, op.name, r.ours, r.ref, r.ratios)
		}
	}
	writeSection(b, "31-guestroot", fmt.Sprintf(`## A real root tree through fs/ (tar, find)

One run on %s. The tree is this machine's /etc, /usr/sbin, /usr/include
and /usr/share/doc plus device nodes, a FIFO, a file capability and ACLs
(the tree TestRealRootTree compares; NTFS holds its files, directories
and symlinks), made into ext4 (mkfs.ext4 -d), XFS and NTFS (copied
through kernel and ntfs-3g mounts) and imported as recovery points.
Every round drops the page cache and mounts both sides anew (cold), and
the order alternates; %d rounds, median and range. Ratio = reference
time / cairn time (1.00 = as fast; targets: tar >= 0.9x of the kernel
mount, find >= 0.8x, NTFS tar >= 1.0x of ntfs-3g).

| filesystem | command | cairn | reference | reference is | ratio (range) |
|---|---|---|---|---|---|
%s
`, time.Now().UTC().Format("2006-01-02"), rounds, strings.Join(rows, "\n")))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(xs []float64, unit string) string {
	return fmt.Sprintf("%.2f %s (%.2f-%.2f)", median(xs), unit, slices.Min(xs), slices.Max(xs))
}

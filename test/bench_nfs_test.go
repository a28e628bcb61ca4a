package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// BenchmarkNFSExport measures `cairn nfs-export` against a reference NFS
// server, nfs-ganesha 4 with FSAL VFS serving the same bytes as a plain
// raw file (the kernel here has no nfsd). Each server runs in a network
// namespace of its own (with its portmapper on 111: ganesha's rpcbind,
// cairn's own) so that qemu's NFS client, which asks port 111, reaches
// it without taking the machine's port 111; the clients run in the same
// namespace over loopback. Five alternating rounds (reference, then
// cairn, the order swapped every round) of:
//
//   - cold sequential read: page cache dropped, qemu-img convert of the
//     whole 1 GiB flat file to a null target (qemu's libnfs driver, 8
//     requests in flight, 256 KiB each);
//   - warm sequential read: the same again;
//   - serial read: nfs-cp (libnfs, one 1 MiB-ish READ at a time) to tmpfs;
//   - scattered 4 KiB reads: qemu-img bench, 20000 reads 1 MiB + 4 KiB
//     apart (wrapping), 16 in flight;
//   - scattered 4 KiB writes: the same with -w (a guest's writes during an
//     instant session; each round writes its own blocks, first to
//     cairn's overlay, into ganesha's file: the two stay equal).
func BenchmarkNFSExport(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireTools(b, "ganesha.nfsd", "rpcbind", "unshare", "nsenter", "ip", "qemu-img", "nfs-cp")
	cairn := buildCairn(b)
	dir := benchDir(b, "nfs-export")
	os.RemoveAll(dir)
	for _, d := range []string{filepath.Join(dir, "ref"), filepath.Join(dir, "session")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	defer os.RemoveAll(dir)
	const size = 1 << 30
	raw := filepath.Join(dir, "ref", "d0-flat.vmdk")
	writeRandom(b, raw, 0, size*3/4, 7)
	if err := os.Truncate(raw, size); err != nil {
		b.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	if err := runQuiet(cairn, "--repo", repo, "init"); err != nil {
		b.Fatal(err)
	}
	if err := runQuiet(cairn, "--repo", repo, "import", "--vm", "vm", "--disk", "d0", raw); err != nil {
		b.Fatal(err)
	}

	conf := filepath.Join(dir, "ganesha.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`NFS_CORE_PARAM { NFS_Port = 2049; MNT_Port = 20048; Enable_UDP = false; Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; }
EXPORT { Export_Id = 1; Path = %s; Pseudo = /ref; Access_Type = RW; Squash = No_Root_Squash; Protocols = 3; Transports = TCP; SecType = sys; FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
`, filepath.Dir(raw))), 0o644)
	ref := startInNetns(b, fmt.Sprintf("rpcbind -f -w & exec ganesha.nfsd -F -f %s -L %s -p %s", conf, filepath.Join(dir, "ganesha.log"), filepath.Join(dir, "ganesha.pid")))
	crn := startInNetns(b, fmt.Sprintf("exec %s --repo %s nfs-export --vm vm --session-dir %s --listen 127.0.0.1:2049 --mount-listen 127.0.0.1:20048 --portmap 127.0.0.1:111",
		cairn, repo, filepath.Join(dir, "session")))
	servers := []struct {
		name, ns, url string
	}{
		{"nfs-ganesha", ref, "nfs://127.0.0.1" + filepath.Dir(raw) + "/d0-flat.vmdk"},
		{"cairn", crn, "nfs://127.0.0.1/cairn/d0-flat.vmdk"},
	}
	for _, s := range servers {
		waitNFS(b, s.ns, s.url)
	}

	type result struct{ cold, warm, serial, iops, wiops []float64 } // MB/s, MB/s, MB/s, reads/s, writes/s
	res := make([]result, len(servers))
	const rounds = 5
	shm := filepath.Join("/dev/shm", fmt.Sprintf("cairn-nfs-bench-%d", os.Getpid()))
	defer os.Remove(shm)
	for r := range rounds {
		for k := range servers {
			i := k
			if r%2 == 1 {
				i = len(servers) - 1 - k
			}
			s := servers[i]
			convert := func() float64 {
				d, err := timeIt(func() error {
					return runQuiet("nsenter", "--net="+s.ns, "qemu-img", "convert", "-n", "-f", "raw", s.url, "--target-image-opts", fmt.Sprintf("driver=null-co,size=%d", size))
				})
				if err != nil {
					b.Fatal(err)
				}
				return size / d.Seconds() / 1e6
			}
			if !dropPageCache() {
				b.Fatal("cannot drop the page cache")
			}
			res[i].cold = append(res[i].cold, convert())
			res[i].warm = append(res[i].warm, convert())
			os.Remove(shm)
			d, err := timeIt(func() error { return runQuiet("nsenter", "--net="+s.ns, "nfs-cp", nfsCpURL(s.url), shm) })
			if err != nil {
				b.Fatal(err)
			}
			os.Remove(shm)
			res[i].serial = append(res[i].serial, size/d.Seconds()/1e6)
			const reads = 20000
			d, err = timeIt(func() error {
				return runQuiet("nsenter", "--net="+s.ns, "qemu-img", "bench", "-f", "raw", "-c", strconv.Itoa(reads), "-d", "16", "-s", "4096", "-S", strconv.Itoa(1<<20+4096), s.url)
			})
			if err != nil {
				b.Fatal(err)
			}
			res[i].iops = append(res[i].iops, reads/d.Seconds())
			d, err = timeIt(func() error {
				return runQuiet("nsenter", "--net="+s.ns, "qemu-img", "bench", "-w", "-f", "raw", "-c", strconv.Itoa(reads), "-d", "16", "-s", "4096", "-S", strconv.Itoa(1<<20+4096), "-o", strconv.Itoa(r*8192), s.url)
			})
			if err != nil {
				b.Fatal(err)
			}
			res[i].wiops = append(res[i].wiops, reads/d.Seconds())
		}
	}
	row := func(what string, unit string, get func(result) []float64) string {
		ref, c := get(res[0]), get(res[1])
		ratios := make([]float64, len(ref))
		for j := range ref {
			ratios[j] = 100 * c[j] / ref[j]
		}
		return fmt.Sprintf("| %s | %.0f %s %s | %.0f %s %s | %.0f %% %s |\n", what, medianFloat(ref), unit, numList(ref), medianFloat(c), unit, numList(c), medianFloat(ratios), percentList(ratios))
	}
	rows := row("sequential, cold (qemu-img convert)", "MB/s", func(r result) []float64 { return r.cold }) +
		row("sequential, warm (qemu-img convert)", "MB/s", func(r result) []float64 { return r.warm }) +
		row("sequential, one READ at a time (nfs-cp)", "MB/s", func(r result) []float64 { return r.serial }) +
		row("4 KiB reads 1 MiB apart, 16 in flight (qemu-img bench)", "reads/s", func(r result) []float64 { return r.iops }) +
		row("4 KiB writes 1 MiB apart, 16 in flight (qemu-img bench -w)", "writes/s", func(r result) []float64 { return r.wiops })
	writeSection(b, "42-nfs-export", fmt.Sprintf(`## NFS export

`+"`cairn nfs-export`"+` (what `+"`cairn restore instant`"+` mounts on ESXi) against
nfs-ganesha 4.3 with FSAL VFS serving the same 1 GiB flat file (3/4 random
data, 1/4 zeros) from a plain file on the same filesystem: the kernel here
has no nfsd. Each server runs in its own network namespace, the clients
over its loopback. Five alternating rounds; medians, all five in brackets
(measured %s).

| read | nfs-ganesha | cairn | cairn / ganesha |
|---|---|---|---|
%s`, time.Now().UTC().Format("2006-01-02"), rows))
}

// numList formats xs as "[412 380 455]" in measured order.
func numList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// nfsCpURL adds the ports to a URL for nfs-cp (libnfs asks the
// portmapper otherwise, which works too, but keep it explicit).
func nfsCpURL(u string) string { return u + "?nfsport=2049&mountport=20048" }

// startInNetns runs script (sh) in a new network namespace with its
// loopback up and returns the namespace's path; the process group is
// killed when the benchmark ends.
func startInNetns(b *testing.B, script string) string {
	b.Helper()
	cmd := exec.Command("unshare", "-n", "sh", "-c", "ip link set lo up && "+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.CreateTemp("", "netns-*.log")
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
		out.Close()
		os.Remove(out.Name())
	})
	// the namespace is the one of unshare's child (sh, then the server)
	ns := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	for range 50 {
		if self, _ := os.Readlink("/proc/self/ns/net"); self != "" {
			if l, _ := os.Readlink(ns); l != "" && l != self {
				return ns
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("no network namespace for %q", script)
	return ""
}

// waitNFS waits until the server in ns answers a READ of url.
func waitNFS(b *testing.B, ns, url string) {
	b.Helper()
	var out []byte
	for range 100 {
		var err error
		out, err = exec.Command("nsenter", "--net="+ns, "qemu-img", "info", "-f", "raw", url).CombinedOutput()
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatalf("the NFS server does not answer %s: %s", url, out)
}

package test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// nbdServe runs an NBD server command until the test ends and waits until
// ready reports it is listening.
func nbdServe(t *testing.T, ready func() bool, name string, args ...string) func() {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		select {
		case <-done:
			return
		default:
		}
		_ = cmd.Process.Kill()
		<-done
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		select {
		case <-done:
			t.Fatalf("%s %v exited: %s", name, args, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v is not listening after 10 s: %s", name, args, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stop
}

// serveQcow2 exports a qcow2 image read-only over a new unix socket with
// qemu-nbd (extra args such as -B BITMAP), and returns the socket and a
// stop function (the image stays locked until stop).
func serveQcow2(t *testing.T, img string, extra ...string) (string, func()) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qemu-nbd.sock")
	args := append([]string{"-r", "-f", "qcow2", "--persistent", "-k", sock}, extra...)
	stop := nbdServe(t, func() bool { _, err := os.Stat(sock); return err == nil }, "qemu-nbd", append(args, img)...)
	return sock, stop
}

// qemuIO runs qemu-io commands (write -P, write -z, ...) on a qcow2 image,
// as a guest's writes: an enabled dirty bitmap of the image records them.
func qemuIO(t *testing.T, img string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	if out, err := exec.Command("qemu-io", append(args, img)...).CombinedOutput(); err != nil || strings.Contains(string(out), "error") {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
}

// runTool runs a command and fails the test unless it succeeds.
func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// qcow2SHA is the SHA-256 of the image's guest view (converted to raw).
func qcow2SHA(t *testing.T, img string) string {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "view.raw")
	runTool(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw)
	defer os.Remove(raw)
	return fileSHA(t, raw)
}

// lastDisk is the named disk of the VM's latest point.
func lastDisk(t *testing.T, repo, vm, disk string) blockmap.DiskInfo {
	t.Helper()
	pts := listPoints(t, repo, vm)
	d, ok := pts[len(pts)-1].Disk(disk)
	if !ok {
		t.Fatalf("latest point of %s has no disk %s", vm, disk)
	}
	return d
}

// TestImportDirtyBitmap backs up a KVM-style qcow2 disk the way
// virtnbdbackup does: a full backup through qemu-nbd, then incrementals
// that read only what the image's persistent dirty bitmap marks (qemu-nbd
// -B). Every point must equal the image's guest view, and an incremental
// must read no more than the dirty blocks.
func TestImportDirtyBitmap(t *testing.T) {
	testutil.RequireTools(t, "qemu-nbd", "qemu-img", "qemu-io")
	dir := t.TempDir()
	repo, img := filepath.Join(dir, "repo"), filepath.Join(dir, "vda.qcow2")
	mustCairn(t, "--repo", repo, "init")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "256M")
	qemuIO(t, img, "write -P 0x11 0 8M", "write -P 0x22 100M 3M", "write -P 0x23 255M 1M")
	runTool(t, "qemu-img", "bitmap", "--add", "-f", "qcow2", img, "cairn-0")

	// Full: no earlier point, so the bitmap is not needed (nor asked for:
	// a first backup reads what base:allocation marks).
	sock, stop := serveQcow2(t, img)
	mustCairn(t, "--repo", repo, "import", "--vm", "kvm1", "--disk", "vda", "nbd+unix:///?socket="+sock)
	stop()
	d := lastDisk(t, repo, "kvm1", "vda")
	if !d.Full || d.ReadBytes != 12<<20 || exportSHA(t, repo, "kvm1", "latest", "vda") != qcow2SHA(t, img) {
		t.Fatalf("full import: full %v read %d bytes (want 12 MiB, the allocated clusters), or the point differs from the image", d.Full, d.ReadBytes)
	}

	rounds := []struct {
		writes []string
		blocks int64 // 64 KiB blocks the writes touch
	}{
		{[]string{"write -P 0x33 4M 64k", "write -P 0x44 200M 4k", "write -P 0x45 130812k 8k"}, 1 + 1 + 2}, // the last one straddles a block boundary
		{[]string{"write -z 100M 1M", "write -P 0x55 50M 256k"}, 16 + 4},                                   // zeroes count as changes
		{nil, 0}, // nothing written: an empty incremental
	}
	for i, r := range rounds {
		if len(r.writes) > 0 {
			qemuIO(t, img, r.writes...)
		}
		sock, stop := serveQcow2(t, img, "-B", "cairn-0")
		// The socket path is a source too: its server's default export.
		mustCairn(t, "--repo", repo, "import", "--vm", "kvm1", "--disk", "vda", "--dirty-bitmap", "cairn-0", sock)
		stop()
		d := lastDisk(t, repo, "kvm1", "vda")
		if d.Full {
			t.Fatalf("round %d: incremental stored as a full point (%s)", i, d.FullReason)
		}
		if d.ReadBytes != r.blocks<<16 {
			t.Fatalf("round %d: read %d bytes, want %d (the dirty blocks only)", i, d.ReadBytes, r.blocks<<16)
		}
		var meta map[string]string
		if err := json.Unmarshal(d.Meta, &meta); err != nil || meta["dirty_bitmap"] != "cairn-0" || meta["transport"] != "nbd" {
			t.Fatalf("round %d: disk metadata %s (%v), want transport nbd and dirty_bitmap cairn-0", i, d.Meta, err)
		}
		if exportSHA(t, repo, "kvm1", "latest", "vda") != qcow2SHA(t, img) {
			t.Fatalf("round %d: the point differs from the image", i)
		}
		// Rotate the bitmap as a checkpoint does: the next incremental
		// reads only what was written after this point.
		runTool(t, "qemu-img", "bitmap", "--clear", "-f", "qcow2", img, "cairn-0")
	}
	if pts := listPoints(t, repo, "kvm1"); len(pts) != 1+len(rounds) {
		t.Fatalf("%d points, want %d", len(pts), 1+len(rounds))
	}

	// A grown disk is read in full even with a bitmap.
	runTool(t, "qemu-img", "resize", "-q", "-f", "qcow2", img, "320M")
	qemuIO(t, img, "write -P 0x66 300M 1M")
	sock, stop = serveQcow2(t, img, "-B", "cairn-0")
	mustCairn(t, "--repo", repo, "import", "--vm", "kvm1", "--disk", "vda", "--dirty-bitmap", "cairn-0", sock)
	stop()
	if d := lastDisk(t, repo, "kvm1", "vda"); !d.Full || !strings.Contains(d.FullReason, "size changed") {
		t.Fatalf("grown disk: full %v, reason %q", d.Full, d.FullReason)
	}
	if exportSHA(t, repo, "kvm1", "latest", "vda") != qcow2SHA(t, img) {
		t.Fatal("grown disk: the point differs from the image")
	}
	checkClean(t, repo)
}

// TestImportNBDSources imports from nbdkit over TCP with a named export,
// and over TLS with the CA given on the command line; a second import
// without changed areas reads everything and stores only what changed.
func TestImportNBDSources(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	dir := t.TempDir()
	repo, src := filepath.Join(dir, "repo"), filepath.Join(dir, "disk.img")
	mustCairn(t, "--repo", repo, "init")
	makeImage(t, src, 32<<20)
	writeRandom(t, src, 0, 4<<20, 1)
	writeRandom(t, src, 20<<20, 1<<20, 2)

	addr := serveFreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	listening := func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	stop := nbdServe(t, listening, "nbdkit", "-t", "1", "-f", "-r", "-i", "127.0.0.1", "-p", port, "-e", "disk0", "file", src)
	uri := "nbd://" + addr + "/disk0"
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "sda", uri)
	if d := lastDisk(t, repo, "vm1", "sda"); d.ReadBytes != 5<<20 || exportSHA(t, repo, "vm1", "latest", "sda") != fileSHA(t, src) {
		t.Fatalf("import from %s: read %d bytes (want the 5 MiB allocated), or the point differs", uri, d.ReadBytes)
	}
	stop()

	writeRandom(t, src, 1<<20, 4096, 3)
	certs := t.TempDir()
	testutil.WriteTLSCerts(t, certs)
	sock := filepath.Join(t.TempDir(), "tls.sock")
	nbdServe(t, func() bool { _, err := os.Stat(sock); return err == nil },
		"nbdkit", "-t", "1", "-f", "-r", "-U", sock, "--tls=require", "--tls-certificates="+certs, "file", src)
	plain := runCairn(t, nil, "--repo", repo, "import", "--vm", "vm1", "--disk", "sda", "nbd+unix:///?socket="+sock)
	requireOneLineError(t, plain, "TLS")
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "sda", "--nbd-tls-ca", filepath.Join(certs, "ca-cert.pem"), "nbds+unix:///?socket="+sock)
	d := lastDisk(t, repo, "vm1", "sda")
	if d.StoredBytes != 64<<10 || exportSHA(t, repo, "vm1", "latest", "sda") != fileSHA(t, src) {
		t.Fatalf("TLS import: stored %d bytes (want the one changed block), or the point differs", d.StoredBytes)
	}
	if n := len(listPoints(t, repo, "vm1")); n != 2 {
		t.Fatalf("%d points, want 2 (the refused plain import must leave none)", n)
	}
	checkClean(t, repo)
}

// TestImportNBDErrors gives NBD sources that cannot work and expects one
// clear line each and no point.
func TestImportNBDErrors(t *testing.T) {
	testutil.RequireTools(t, "qemu-nbd", "qemu-img")
	dir := t.TempDir()
	repo, src, img := filepath.Join(dir, "repo"), filepath.Join(dir, "disk.img"), filepath.Join(dir, "vda.qcow2")
	mustCairn(t, "--repo", repo, "init")
	makeImage(t, src, 4<<20)
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	runTool(t, "qemu-img", "bitmap", "--add", "-f", "qcow2", img, "b0")
	sock, _ := serveQcow2(t, img) // without -B: the bitmap is not exported
	uri := "nbd+unix:///?socket=" + sock
	imp := []string{"--repo", repo, "import", "--vm", "vm1", "--disk", "vda"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bitmap not exported", append(imp, "--dirty-bitmap", "b0", uri), "start qemu-nbd with -B b0"},
		{"bitmap on a file", append(imp, "--dirty-bitmap", "b0", "--dirty-bitmap", "b0", src), "2 --dirty-bitmap names for 1 disks"},
		{"bitmap for a file", append(imp, "--dirty-bitmap", "b0", src), "can be read from NBD sources only (nbd://HOST/EXPORT"},
		{"bitmap and changed", append(imp, "--dirty-bitmap", "b0", "--changed", "0:4096", uri), "both --dirty-bitmap and changed areas"},
		{"bitmap and full", append(imp, "--dirty-bitmap", "b0", "--full", uri), "drop --dirty-bitmap, or --full"},
		{"no server", append(imp, "nbd+unix:///?socket="+filepath.Join(dir, "none.sock")), "no NBD server socket at " + filepath.Join(dir, "none.sock")},
		{"bad scheme", append(imp, "nbd+tcp://host/x"), "unsupported scheme"},
		{"unknown export", append(imp, "nbd+unix:///nope?socket="+sock), "nope"},
		{"cert without key", append(imp, "--nbd-tls-cert", src, uri), "--nbd-tls-cert and --nbd-tls-key together"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requireOneLineError(t, runCairn(t, []string{"CAIRN_REPO="}, c.args...), c.want)
		})
	}
	if pts := listPoints(t, repo, "vm1"); len(pts) != 0 {
		t.Fatalf("failed imports left %d points", len(pts))
	}
	checkClean(t, repo)
}

package nfsserve

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/cairnbackup/cairn/backupd/nbdserve"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// point commits a point of VM "vm" with the given disks (name -> bytes)
// and returns it with its repository.
func point(t *testing.T, disks map[string][]byte, order ...string) (*blockmap.Repo, blockmap.Point) {
	t.Helper()
	ctx := context.Background()
	repo := testutil.NewRepo(t)
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range order {
		img := disks[name]
		w, err := s.AddDisk(ctx, name, int64(len(img)), blockmap.DiskOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt(img, 0); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return repo, p
}

// twoDisks: a 64 MiB disk with data at 10-13 MiB and 44 MiB + a few
// blocks, holes elsewhere, and an 8 MiB disk full of data.
func twoDisks() (map[string][]byte, []string) {
	a := make([]byte, 64<<20)
	rand.Read(a[10<<20 : 13<<20])
	rand.Read(a[44<<20 : 44<<20+200<<10])
	b := make([]byte, 8<<20)
	rand.Read(b)
	return map[string][]byte{"disk0": a, "scsi0:1": b}, []string{"disk0", "scsi0:1"}
}

func openExport(t *testing.T, repo *blockmap.Repo, p blockmap.Point, dir string) *Export {
	t.Helper()
	e, err := Open(context.Background(), Options{SessionDir: dir, Point: p,
		OpenDisk: func(ctx context.Context, disk string) (nbdserve.Source, error) { return repo.OpenDisk(ctx, p, disk) }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// ports are where a test export answers.
type ports struct{ nfs, mount int }

// serveExport serves e (NFS and MOUNT) on TCP ports of 127.0.0.1; stop
// ends it (also at cleanup).
func serveExport(t *testing.T, e *Export) (pt ports, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- e.Serve(ctx, ln) }()
	go func() { done <- e.ServeMount(ctx, mln, nil) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return ports{ln.Addr().(*net.TCPAddr).Port, mln.Addr().(*net.TCPAddr).Port}, stop
}

// url is a libnfs URL of file on the export (no portmapper needed:
// libnfs takes the ports from the URL).
func url(pt ports, file string) string {
	return fmt.Sprintf("nfs://127.0.0.1/cairn/%s?nfsport=%d&mountport=%d", file, pt.nfs, pt.mount)
}

// nfsCat reads a file through libnfs's nfs-cp into a local file.
func nfsCat(t *testing.T, port ports, file string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("nfs-cp", url(port, file), dst).CombinedOutput(); err != nil {
		t.Fatalf("nfs-cp %s: %v\n%s", file, err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// diskHash hashes a disk as the point gives it.
func diskHash(t *testing.T, repo *blockmap.Repo, p blockmap.Point, disk string) string {
	t.Helper()
	dr, err := repo.OpenDisk(context.Background(), p, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(dr, 0, dr.Size())); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestNFSClientReadsEveryDiskByteExact(t *testing.T) {
	testutil.RequireTools(t, "nfs-cp", "nfs-ls")
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	e := openExport(t, repo, p, t.TempDir())
	defer e.Close()
	port, _ := serveExport(t, e)

	out, err := exec.Command("nfs-ls", url(port, "")).CombinedOutput()
	if err != nil {
		t.Fatalf("nfs-ls: %v\n%s", err, out)
	}
	for _, want := range []string{"disk0.vmdk", "disk0-flat.vmdk", "scsi0_1.vmdk", "scsi0_1-flat.vmdk"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nfs-ls does not list %s:\n%s", want, out)
		}
	}
	for i, d := range e.Disks() {
		got := nfsCat(t, port, d.Flat)
		if len(got) != len(disks[order[i]]) || sum(got) != sum(disks[order[i]]) {
			t.Errorf("%s over NFS: %d bytes, not the point's %d bytes of disk %s", d.Flat, len(got), len(disks[order[i]]), order[i])
		}
		desc := string(nfsCat(t, port, d.Descriptor))
		if !strings.Contains(desc, fmt.Sprintf("RW %d VMFS \"%s\"", len(disks[order[i]])/512, d.Flat)) {
			t.Errorf("descriptor %s does not name its flat extent:\n%s", d.Descriptor, desc)
		}
	}
}

// qemuIO runs qemu-io commands on a raw file of the export (qemu's nfs
// driver asks the portmapper on port 111).
func qemuIO(t *testing.T, file string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, "nfs://127.0.0.1/cairn/"+file)
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "failed") {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
	return string(out)
}

// portmapper answers on 127.0.0.1:111 for an export at port, until the
// test ends; tests that need it skip (fail under CI) when 111 is taken.
func portmapper(t *testing.T, pt ports) {
	t.Helper()
	testutil.RequireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:111")
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			testutil.Missing(t, "a free port 111 for the portmapper (rpcbind is running?)")
		}
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:111")
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Portmapper{NFSPort: pt.nfs, MountPort: pt.mount}).Serve(ctx, ln, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("portmapper: %v", err)
		}
	})
}

func TestNFSWritesGoToTheOverlayAndThePointStays(t *testing.T) {
	testutil.RequireTools(t, "nfs-cp", "qemu-io")
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	before := diskHash(t, repo, p, "disk0")
	dir := t.TempDir()
	e := openExport(t, repo, p, dir)
	port, stop := serveExport(t, e)
	portmapper(t, port)

	// writes through qemu's NFS client: aligned, unaligned, in a hole and over data
	qemuIO(t, "disk0-flat.vmdk", "write -P 0xab 1M 64k", "write -P 0xcd 11534437 5000", "write -P 0xee 67104768 1024")
	want := bytes.Clone(disks["disk0"])
	fill := func(off, n int, c byte) {
		for i := off; i < off+n; i++ {
			want[i] = c
		}
	}
	fill(1<<20, 64<<10, 0xab)
	fill(11534437, 5000, 0xcd)
	fill(67104768, 1024, 0xee)
	if got := nfsCat(t, port, "disk0-flat.vmdk"); sum(got) != sum(want) {
		t.Errorf("disk0 read back over NFS does not show the writes")
	}
	// a write past the end of a disk is refused, the disk does not grow
	if out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 1 67108864 4096", "nfs://127.0.0.1/cairn/disk0-flat.vmdk").CombinedOutput(); err == nil && !strings.Contains(string(out), "failed") {
		t.Errorf("a write past the end was taken:\n%s", out)
	}
	// hypervisor files land in the scratch directory
	vmx := filepath.Join(t.TempDir(), "vm.vmx")
	os.WriteFile(vmx, []byte("displayName = \"vm\"\n"), 0o644)
	if out, err := exec.Command("nfs-cp", vmx, url(port, "vm.vmx")).CombinedOutput(); err != nil {
		t.Fatalf("nfs-cp to the export: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, filesDir, "vm.vmx")); err != nil || string(b) != "displayName = \"vm\"\n" {
		t.Errorf("vm.vmx in the scratch directory: %q %v", b, err)
	}
	stop()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// the point is byte-identical and verifies
	if got := diskHash(t, repo, p, "disk0"); got != before {
		t.Errorf("the point changed under the writes")
	}
	rep, err := repo.Verify(context.Background(), blockmap.VerifyOptions{VM: "vm"})
	if err != nil || !rep.OK() {
		t.Errorf("verify after the session: %v %+v", err, rep)
	}
	// the session reopens with its writes (an export restarted on the same directory)
	e2 := openExport(t, repo, p, dir)
	defer e2.Close()
	port2, _ := serveExport(t, e2)
	if got := nfsCat(t, port2, "disk0-flat.vmdk"); sum(got) != sum(want) {
		t.Errorf("the reopened session lost the writes")
	}
}

func TestSessionDirOfAnotherPointRefused(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	dir := t.TempDir()
	e := openExport(t, repo, p, dir)
	e.Close()
	other := p
	other.ID = "2020-01-01T00-00-00Z"
	_, err := Open(context.Background(), Options{SessionDir: dir, Point: other,
		OpenDisk: func(ctx context.Context, disk string) (nbdserve.Source, error) { return repo.OpenDisk(ctx, p, disk) }})
	if !errors.Is(err, ErrOtherSession) || !strings.Contains(err.Error(), "--session-dir") {
		t.Fatalf("a session directory of another point: %v", err)
	}
}

// goMount mounts the export at pt with go-nfs-client (through the NFS
// port, which answers MNT too).
func goMount(t *testing.T, pt ports) *nfsc.Target {
	t.Helper()
	c, err := dialRPC(fmt.Sprintf("127.0.0.1:%d", pt.nfs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	m := &nfsc.Mount{Client: c}
	target, err := m.Mount(ExportPath, rpc.AuthNull)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func TestFileHandlesSurviveARestart(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	dir := t.TempDir()
	e := openExport(t, repo, p, dir)
	pt, stop := serveExport(t, e)
	target := goMount(t, pt)
	if _, err := target.Mkdir("/vm", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := target.Create("/vm/vm.vmx", 0o644); err != nil {
		t.Fatal(err)
	}
	handles := map[string][]byte{}
	for _, name := range []string{"/disk0-flat.vmdk", "/vm/vm.vmx", "/vm"} {
		_, fh, err := target.Lookup(name)
		if err != nil {
			t.Fatalf("lookup %s: %v", name, err)
		}
		handles[name] = fh
	}
	stop()
	e.Close()

	e2 := openExport(t, repo, p, dir)
	defer e2.Close()
	pt2, _ := serveExport(t, e2)
	target2 := goMount(t, pt2)
	for name, fh := range handles {
		attr, err := target2.GetAttr(fh)
		if err != nil {
			t.Errorf("handle of %s after a restart: %v", name, err)
			continue
		}
		if name == "/disk0-flat.vmdk" && attr.Size() != int64(len(disks["disk0"])) {
			t.Errorf("handle of %s after a restart: size %d", name, attr.Size())
		}
	}
	// a handle of another session is stale, not another file
	other := append([]byte(nil), handles["/vm/vm.vmx"]...)
	other[0] ^= 0xff
	if _, err := target2.GetAttr(other); err == nil {
		t.Errorf("a foreign handle was taken")
	}
}

func TestMountOfAnotherPathRefused(t *testing.T) {
	testutil.RequireTools(t, "nfs-ls")
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	e := openExport(t, repo, p, t.TempDir())
	defer e.Close()
	pt, _ := serveExport(t, e)
	out, err := exec.Command("nfs-ls", fmt.Sprintf("nfs://127.0.0.1/elsewhere/?nfsport=%d&mountport=%d", pt.nfs, pt.mount)).CombinedOutput()
	if err == nil {
		t.Errorf("a mount of /elsewhere was taken:\n%s", out)
	}
	c, err := dialRPC(fmt.Sprintf("127.0.0.1:%d", pt.nfs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := (&nfsc.Mount{Client: c}).Mount("/elsewhere", rpc.AuthNull); err == nil {
		t.Errorf("a mount of /elsewhere through the NFS port was taken")
	}
}

// dialRPC is rpc.DialTCP, again when the random local port it binds is
// taken (it does not retry itself).
func dialRPC(addr string) (*rpc.Client, error) {
	var err error
	for range 20 {
		var c *rpc.Client
		if c, err = rpc.DialTCP("tcp", addr, false); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			return c, err
		}
	}
	return nil, err
}

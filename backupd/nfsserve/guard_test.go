package nfsserve

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/cairnbackup/cairn/backupd/nbdserve"
	"github.com/cairnbackup/cairn/blockmap"
)

// callMsg is an ONC RPC call (AUTH_NONE credential and verifier).
func callMsg(prog, vers, proc uint32, args ...[]byte) []byte {
	b := u32s(0x1234, 0, 2, prog, vers, proc, 0, 0, 0, 0)
	for _, a := range args {
		b = append(b, a...)
	}
	return b
}

// record frames msg as one last fragment.
func record(msg []byte) []byte {
	return append(u32s(0x80000000|uint32(len(msg))), msg...)
}

// errClosed means the server ended the connection instead of replying.
var errClosed = errors.New("connection closed by the server")

// rawRPC sends raw (a framed record, or any bytes) on a new connection to
// addr and returns the accept_stat and body of the reply, or errClosed.
func rawRPC(t *testing.T, addr string, raw []byte) (uint32, []byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a bound against a hang, not an assertion
	if _, err := c.Write(raw); err != nil {
		return 0, nil, errClosed
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return 0, nil, errClosed
		}
		return 0, nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[:])&0x7fffffff)
	if _, err := io.ReadFull(c, msg); err != nil {
		return 0, nil, err
	}
	rd := &xdrReader{b: msg}
	rd.u32()
	if rd.u32() != 1 || rd.u32() != 0 {
		return 0, nil, fmt.Errorf("not an accepted reply: %x", msg)
	}
	rd.opaqueAuth()
	stat := rd.u32()
	if rd.bad {
		return 0, nil, fmt.Errorf("short reply: %x", msg)
	}
	return stat, rd.b, nil
}

// nfsStatus is the nfsstat3 of an NFS reply body.
func nfsStatus(body []byte) uint32 {
	if len(body) < 4 {
		return 0xffffffff
	}
	return binary.BigEndian.Uint32(body)
}

func str(s string) []byte { return xdrOpaque([]byte(s)) }

// sattrNone is a sattr3 that sets nothing.
var sattrNone = u32s(0, 0, 0, 0, 0, 0)

func TestMalformedCallsDisconnectedWithoutAllocating(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	e := openExport(t, repo, p, t.TempDir())
	defer e.Close()
	pt, _ := serveExport(t, e)
	addr := fmt.Sprintf("127.0.0.1:%d", pt.nfs)
	root := e.h.ToHandle(e.h.fs, nil)

	huge := func(n uint32) []byte { return u32s(n) } // a length word and no bytes behind it
	cases := []struct {
		name string
		raw  []byte
	}{
		{"credential of 2 GiB", record(append(u32s(1, 0, 2, progNFS, 3, 1, 1), huge(0x7ffffff0)...))},
		{"GETATTR handle of 4 GiB", record(callMsg(progNFS, 3, 1, huge(0xfffffff0)))},
		{"GETATTR handle of 4 GiB as version 2", record(callMsg(progNFS, 2, 1, huge(0xfffffff0)))},
		{"MNT path of 4 GiB as MOUNT version 1", record(callMsg(progMount, 1, 1, huge(0xfffffff0)))},
		{"ACCESS handle of 2 GiB", record(callMsg(progNFS, 3, 4, huge(0x7ffffff0), u32s(0x1f)))},
		{"WRITE data of 2 GiB in a small call", record(callMsg(progNFS, 3, 7, xdrOpaque(root), u32s(0, 0, 4096, 2), huge(0x7ffffff0)))},
		{"SYMLINK target of 4 GiB", record(callMsg(progNFS, 3, 10, xdrOpaque(root), str("l"), sattrNone, huge(0xfffffff0)))},
		{"MNT path of 4 GiB on the NFS port", record(callMsg(progMount, 3, 1, huge(0xfffffff0)))},
		{"record of 2 GiB", u32s(0xffffffff, 0x1234, 0)},
		{"a first fragment (not the last)", append(u32s(0x7ffffff0), callMsg(progNFS, 3, 0)...)},
		{"LOOKUP of a name with slashes", record(callMsg(progNFS, 3, 3, xdrOpaque(root), str("../../../etc/passwd")))},
		{"CREATE of ..", record(callMsg(progNFS, 3, 8, xdrOpaque(root), str(".."), u32s(0), sattrNone))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := rawRPC(t, addr, tc.raw)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errClosed) {
				t.Errorf("the server answered (err %v) instead of disconnecting", err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 256<<20 {
				t.Errorf("the server allocated %d MiB for a call of %d bytes", got>>20, len(tc.raw))
			}
		})
	}
	// the export still answers (and the connections' places are free)
	if stat, _, err := rawRPC(t, addr, record(callMsg(progNFS, 3, 0))); err != nil || stat != 0 {
		t.Fatalf("NULL after the malformed calls: %d %v", stat, err)
	}
	if stat, body, err := rawRPC(t, addr, record(callMsg(progNFS, 3, 1, xdrOpaque(root)))); err != nil || stat != 0 || nfsStatus(body) != 0 {
		t.Fatalf("GETATTR of the root after the malformed calls: %d %d %v", stat, nfsStatus(body), err)
	}
}

func TestLinksDevicesAndEscapesRefused(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	before := diskHash(t, repo, p, "disk0")
	dir := t.TempDir()
	e := openExport(t, repo, p, dir)
	pt, stop := serveExport(t, e)
	addr := fmt.Sprintf("127.0.0.1:%d", pt.nfs)
	root := e.h.ToHandle(e.h.fs, nil)
	files := filepath.Join(dir, filesDir)
	if err := os.WriteFile(filepath.Join(t.TempDir(), "secret"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}

	target := goMount(t, pt)
	if err := target.Symlink("/etc", "/esc"); err == nil {
		t.Errorf("SYMLINK to /etc was taken")
	}
	if err := target.Symlink("disk0-flat.vmdk", "/alias"); err == nil {
		t.Errorf("SYMLINK to a flat file was taken")
	}
	calls := []struct {
		name, leaves string
		msg          []byte
	}{
		{"LINK to /etc/passwd", "hl", callMsg(progNFS, 3, 15, xdrOpaque(root), xdrOpaque(root), str("hl"), sattrNone, str("/etc/passwd"))},
		{"MKNOD of a block device", "sda", callMsg(progNFS, 3, 11, xdrOpaque(root), str("sda"), u32s(3), u32s(1, 0o666, 0, 0, 0, 0, 0, 0), u32s(8, 0))},
		{"MKNOD of a character device", "mem", callMsg(progNFS, 3, 11, xdrOpaque(root), str("mem"), u32s(4), u32s(1, 0o666, 0, 0, 0, 0, 0, 0), u32s(1, 1))},
		{"MKNOD of a FIFO", "fifo", callMsg(progNFS, 3, 11, xdrOpaque(root), str("fifo"), u32s(7), sattrNone)},
		{"LOOKUP of .. from the export's root", "", callMsg(progNFS, 3, 3, xdrOpaque(root), str(".."))},
	}
	for _, c := range calls {
		stat, body, err := rawRPC(t, addr, record(c.msg))
		if err == nil && stat == 0 && nfsStatus(body) == 0 {
			t.Errorf("%s: answered NFS3_OK", c.name)
		}
		if c.leaves != "" {
			if _, err := os.Lstat(filepath.Join(files, c.leaves)); err == nil {
				t.Errorf("%s: %s exists in the scratch directory", c.name, c.leaves)
			}
		}
	}
	// a handle forged for a path outside the tree is stale
	for _, outside := range [][]string{{"..", "..", "etc", "passwd"}, {"/etc/passwd"}, {"..", "overlays", "disk0-flat.vmdk.overlay"}} {
		fh := e.h.key(outside)
		if stat, body, err := rawRPC(t, addr, record(callMsg(progNFS, 3, 6, xdrOpaque(fh[:]), u32s(0, 0, 4096)))); err == nil && stat == 0 && nfsStatus(body) == 0 {
			t.Errorf("READ of a handle forged for %v was answered", outside)
		}
	}
	// the flat file keeps its size, name and bytes
	if err := target.Setattr("/disk0-flat.vmdk", nfsc.Sattr3{Size: nfsc.SetSize{SetIt: true, Size: 0}}); err == nil {
		t.Errorf("SETATTR size 0 of a flat file was taken")
	}
	if err := target.Rename("/disk0-flat.vmdk", "/x.vmdk"); err == nil {
		t.Errorf("RENAME of a flat file was taken")
	}
	if _, err := target.Create("/scratch.bin", 0o644); err != nil {
		t.Fatal(err)
	}
	if err := target.Rename("/scratch.bin", "/disk0-flat.vmdk"); err == nil {
		t.Errorf("RENAME of a scratch file over a flat file was taken")
	}
	if fi, err := target.Getattr("/disk0-flat.vmdk"); err != nil || fi.Size() != int64(len(disks["disk0"])) {
		t.Errorf("the flat file after the attacks: %v %v", fi, err)
	}
	if f, err := target.Open("/disk0-flat.vmdk"); err != nil {
		t.Errorf("open the flat file after the attacks: %v", err)
	} else {
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || sum(b) != before {
			t.Errorf("the flat file read over NFS after the attacks is not the point's disk (%d bytes, %v)", len(b), err)
		}
	}
	stop()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := diskHash(t, repo, p, "disk0"); got != before {
		t.Errorf("the point changed")
	}
	rep, err := repo.Verify(context.Background(), blockmap.VerifyOptions{VM: "vm"})
	if err != nil || !rep.OK() {
		t.Errorf("verify after the attacks: %v %+v", err, rep)
	}
}

func TestScratchWritesKeepTheFreeSpaceReserve(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	dir := t.TempDir()
	e, err := Open(context.Background(), Options{SessionDir: dir, Point: p, MinFree: 1 << 62,
		OpenDisk: func(ctx context.Context, disk string) (nbdserve.Source, error) { return repo.OpenDisk(ctx, p, disk) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	pt, _ := serveExport(t, e)
	target := goMount(t, pt)
	f, err := target.OpenFile("/vm.vswp", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(bytes.Repeat([]byte{1}, 64<<10))
	f.Close()
	if werr == nil {
		t.Errorf("a scratch write beyond the reserve was taken")
	}
	if fi, err := os.Stat(filepath.Join(dir, filesDir, "vm.vswp")); err != nil || fi.Size() != 0 {
		t.Errorf("vm.vswp after the refused write: %v %v", fi, err)
	}
	// the flat files (bounded by the disks' sizes) still take writes
	df, err := target.OpenFile("/disk0-flat.vmdk", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.Write(bytes.Repeat([]byte{2}, 4096)); err != nil {
		t.Errorf("a flat file write under a full reserve: %v", err)
	}
	df.Close()
}

func TestAllowListDecidesWhoConnects(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	allow := NewAllowList([]netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")})
	e, err := Open(context.Background(), Options{SessionDir: t.TempDir(), Point: p, Allow: allow,
		OpenDisk: func(ctx context.Context, disk string) (nbdserve.Source, error) { return repo.OpenDisk(ctx, p, disk) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	pt, _ := serveExport(t, e)
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	upc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- (&Portmapper{NFSPort: pt.nfs, MountPort: pt.mount, Allow: allow}).Serve(ctx, pln, upc) }()
	defer func() { cancel(); <-done }()
	// udpCall asks the portmapper over UDP; false: no answer within 2 s
	udpCall := func() bool {
		c, err := net.Dial("udp", upc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(callMsg(progPortmap, 2, 3, u32s(progMount, 3, 6, 0)))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		return err == nil && n >= 28
	}
	if udpCall() {
		t.Errorf("the portmapper answered a UDP call from 127.0.0.1, which is not in the allow list")
	}

	servers := map[string][]byte{
		fmt.Sprintf("NFS 127.0.0.1:%d", pt.nfs):     record(callMsg(progNFS, 3, 0)),
		fmt.Sprintf("MOUNT 127.0.0.1:%d", pt.mount): record(callMsg(progMount, 3, 0)),
		"portmapper " + pln.Addr().String():         record(callMsg(progPortmap, 2, 0)),
	}
	for name, msg := range servers {
		addr := name[strings.Index(name, " ")+1:]
		if _, _, err := rawRPC(t, addr, msg); !errors.Is(err, errClosed) {
			t.Errorf("%s answered 127.0.0.1, which is not in the allow list (%v)", name, err)
		}
	}
	allow.Set(Loopback)
	if !udpCall() {
		t.Errorf("the portmapper did not answer a UDP call from 127.0.0.1 once allowed")
	}
	for name, msg := range servers {
		addr := name[strings.Index(name, " ")+1:]
		if stat, _, err := rawRPC(t, addr, msg); err != nil || stat != 0 {
			t.Errorf("%s refused 127.0.0.1 once allowed: %d %v", name, stat, err)
		}
	}
}

func TestParseAllow(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		allowed []string
		refused []string
		err     bool
	}{
		{in: nil, allowed: []string{"127.0.0.1", "::1"}, refused: []string{"10.0.0.1"}},
		{in: []string{"10.0.0.5"}, allowed: []string{"10.0.0.5", "::ffff:10.0.0.5"}, refused: []string{"10.0.0.6", "127.0.0.1"}},
		{in: []string{"10.0.0.0/24", "fd00::/8"}, allowed: []string{"10.0.0.200", "fd00::1"}, refused: []string{"10.0.1.1"}},
		{in: []string{"10.0.0.9/24"}, allowed: []string{"10.0.0.1"}},
		{in: []string{"any"}, allowed: []string{"203.0.113.1", "2001:db8::1"}},
		{in: []string{"esxi01"}, err: true},
		{in: []string{"10.0.0.0/33"}, err: true},
	} {
		p, err := ParseAllow(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseAllow(%q): %v", tc.in, err)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "10.0.0.0/24") {
				t.Errorf("ParseAllow(%q): the error gives no example: %v", tc.in, err)
			}
			continue
		}
		a := NewAllowList(p)
		for _, s := range tc.allowed {
			if !a.Allows(&net.TCPAddr{IP: net.ParseIP(s)}) {
				t.Errorf("%q refuses %s", tc.in, s)
			}
		}
		for _, s := range tc.refused {
			if a.Allows(&net.TCPAddr{IP: net.ParseIP(s)}) {
				t.Errorf("%q allows %s", tc.in, s)
			}
		}
	}
}

// FuzzCheckCall: no call makes the check (or the MOUNT server and the
// portmapper, which decode the same bytes) panic.
func FuzzCheckCall(f *testing.F) {
	fh := bytes.Repeat([]byte{7}, handleLen)
	f.Add(callMsg(progNFS, 3, 0))
	f.Add(callMsg(progNFS, 3, 7, xdrOpaque(fh), u32s(0, 0, 4, 2, 4), []byte("abcd")))
	f.Add(callMsg(progNFS, 3, 10, xdrOpaque(fh), str("l"), u32s(1, 0o777, 0, 0, 0, 2, 1, 2, 0), str("t")))
	f.Add(callMsg(progMount, 3, 1, str("/cairn")))
	f.Add(callMsg(progMount, 3, 5))
	f.Add(callMsg(progPortmap, 2, 3, u32s(progMount, 3, 6, 0)))
	f.Add(callMsg(progPortmap, 2, 4))
	f.Add(u32s(1, 0, 2, progNFS, 3, 1, 1, 0xfffffffd))
	pm := &Portmapper{NFSPort: 2049, MountPort: 20048}
	m := &mountd{h: &handler{paths: map[[handleLen]byte][]string{}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = checkCall(b, int64(len(b)))
		_ = checkCall(b, int64(len(b))+1<<20)
		rpcReply(b, pm.dispatch)
		rpcReply(b, func(prog, vers, proc uint32, rd *xdrReader) (uint32, []byte) {
			if prog == progMount && vers == 3 && proc == 1 { // MNT needs a filesystem
				return 0, nil
			}
			return m.dispatch(prog, vers, proc, rd)
		})
	})
}

func TestForgedHandlesDoNotWalkTheTreeEachTime(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	dir := t.TempDir()
	e := openExport(t, repo, p, dir)
	defer e.Close()
	pt, _ := serveExport(t, e)
	addr := fmt.Sprintf("127.0.0.1:%d", pt.nfs)
	for i := range 200 {
		if err := os.MkdirAll(filepath.Join(dir, filesDir, fmt.Sprintf("d%d/e", i)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// the first unknown handle learns the tree (handles from before a restart)
	known := e.h.key([]string{"d7", "e"})
	if stat, body, err := rawRPC(t, addr, record(callMsg(progNFS, 3, 1, xdrOpaque(known[:])))); err != nil || stat != 0 || nfsStatus(body) != 0 {
		t.Fatalf("GETATTR of a path made before the handle was asked: %d %d %v", stat, nfsStatus(body), err)
	}
	for i := range 50 {
		fh := e.h.key([]string{"nothing", fmt.Sprint(i)})
		if _, body, err := rawRPC(t, addr, record(callMsg(progNFS, 3, 1, xdrOpaque(fh[:])))); err != nil || nfsStatus(body) == 0 {
			t.Fatalf("a forged handle was answered: %v", err)
		}
	}
	e.h.mu.Lock()
	walks := e.h.walks
	e.h.mu.Unlock()
	if walks != 1 {
		t.Errorf("51 unknown handles walked the tree %d times (want once)", walks)
	}
}

func TestConnectionsBounded(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	e := openExport(t, repo, p, t.TempDir())
	defer e.Close()
	pt, _ := serveExport(t, e)
	for _, port := range []int{pt.nfs, pt.mount} {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		var held []net.Conn
		for range MaxConns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		// each held connection is answered (so the server has taken it)
		for _, c := range held {
			c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := c.Write(record(callMsg(progNFS, 3, 0))); err != nil {
				t.Fatal(err)
			}
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatalf("port %d: a held connection got no answer: %v", port, err)
			}
			io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:])&0x7fffffff))
		}
		if _, _, err := rawRPC(t, addr, record(callMsg(progNFS, 3, 0))); !errors.Is(err, errClosed) {
			t.Errorf("port %d: connection %d was taken (%v)", port, MaxConns+1, err)
		}
		held[0].Close()
		var err error
		for range 100 { // the server notices the close when it reads
			if _, _, err = rawRPC(t, addr, record(callMsg(progNFS, 3, 0))); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("port %d: a freed place was not taken again: %v", port, err)
		}
		for _, c := range held[1:] {
			c.Close()
		}
	}
}

func TestSessionDirWithOtherFilesRefused(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	dir := t.TempDir()
	keep := filepath.Join(dir, "cairn.json")
	if err := os.WriteFile(keep, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Options{SessionDir: dir, Point: p,
		OpenDisk: func(ctx context.Context, disk string) (nbdserve.Source, error) { return repo.OpenDisk(ctx, p, disk) }})
	if !errors.Is(err, ErrNotSessionDir) || !strings.Contains(err.Error(), "empty or new directory") {
		t.Fatalf("a directory holding other files as the session directory: %v", err)
	}
	if list, _ := os.ReadDir(dir); len(list) != 1 {
		t.Errorf("the refused directory was changed: %d entries", len(list))
	}
	// a new, an empty and a session's own directory are taken
	empty := t.TempDir()
	for _, d := range []string{filepath.Join(t.TempDir(), "new"), empty, empty} {
		e := openExport(t, repo, p, d)
		e.Close()
	}
}

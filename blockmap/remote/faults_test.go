package remote

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestDedupAndCompression: ten VMs cloned from one template, each changed
// a little, take about one template plus the changes on the remote; text
// shrinks.
func TestDedupAndCompression(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(3, 4))
	tmpl := randBytes(rnd, 8<<20)
	text := textBytes(2 << 20)
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	var pts []blockmap.Point
	var logical int64
	const change = 128 << 10
	for i := range 10 {
		vm := "clone-" + string(rune('a'+i))
		d := diskSpec{name: "disk-0", size: 32 << 20, data: map[int64][]byte{0: tmpl, 16 << 20: text,
			int64(i+1) * 512 << 10: randBytes(rnd, change)}}
		pts = append(pts, writePoint(t, repo, vm, t0.Add(time.Duration(i)*time.Minute), []diskSpec{d}))
		logical += int64(len(tmpl) + len(text))
	}
	r := e.open()
	st, err := r.Replicate(ctx(t), repo, pts, ReplicateOptions{CacheDir: cacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	stored := e.storedBytes()
	// One template (8 MiB random, 2 MiB text) plus ten changes of 128 KiB.
	expect := int64(len(tmpl)) + 10*change
	t.Logf("logical %d bytes of data in 10 VMs, stored %d (%.1fx less); one template + changes = %d; ratio stored/expected %.3f",
		logical, stored, float64(logical)/float64(stored), expect, float64(stored)/float64(expect))
	if stored > expect*11/10 || stored < int64(len(tmpl)) {
		t.Fatalf("stored %d bytes, want about %d (one template plus the changes)", stored, expect)
	}
	// Compression: the text region, alone in a VM of its own.
	repo2 := testutil.NewRepo(t)
	p := writePoint(t, repo2, "text", t0, []diskSpec{{name: "d", size: 4 << 20, data: map[int64][]byte{0: textBytes(4 << 20)}}})
	st, err = r.Replicate(ctx(t), repo2, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	// The text repeats per block, so dedup folds it; compression is what the
	// one stored block shows.
	t.Logf("text: %d raw bytes of new blocks -> %d in packs (%.1fx)", st.RawNew, st.PackBytes, float64(st.RawNew)/float64(max(st.PackBytes, 1)))
	if st.BlocksNew == 0 || st.PackBytes*10 > st.RawNew {
		t.Fatalf("text compressed to %d of %d bytes", st.PackBytes, st.RawNew)
	}
}

// bigPoint writes a VM whose disk needs many packs.
func bigPoint(t *testing.T, repo *blockmap.Repo, vm string, seed uint64) blockmap.Point {
	rnd := rand.New(rand.NewPCG(seed, 9))
	return writePoint(t, repo, vm, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC),
		[]diskSpec{{name: "disk-0", size: 24 << 20, data: map[int64][]byte{0: randBytes(rnd, 12<<20)}}})
}

// TestRadosgwKilledMidReplication: the object store (radosgw, versitygw)
// dies after a few packs. The run fails cleanly, no point is visible, and
// the next run uploads only the packs that are missing; the result pulls
// back byte for byte.
func TestRadosgwKilledMidReplication(t *testing.T) { s3test.Each(t, testRadosgwKilledMidReplication) }

func testRadosgwKilledMidReplication(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	repo := testutil.NewRepo(t)
	p := bigPoint(t, repo, "big", 1)
	r := e.open()
	cd := cacheDir(t)
	restarted := false
	defer func() {
		if !restarted {
			_ = e.c.Restart(context.Background())
		}
	}()
	r.afterPack = func(n int64) {
		if n == 4 {
			e.c.Kill()
		}
	}
	st1, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cd})
	if err == nil {
		t.Fatal("replication succeeded with radosgw killed")
	}
	t.Logf("first run failed as it should: %v", err)
	if err := e.c.Restart(ctx(t)); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if pts, _, err := r.Points(ctx(t)); err != nil || len(pts) != 0 {
		t.Fatalf("after the failed run the remote lists %d points (%v)", len(pts), err)
	}
	stored := len(e.objects(indexPrefix))
	if stored < 4 {
		t.Fatalf("only %d packs stored before the kill", stored)
	}
	r.afterPack = nil
	st2, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cd})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(12 << 20 / repo.BlockSize())
	t.Logf("first run stored %d packs (%d blocks new), second run uploaded %d new blocks of %d", stored, st1.BlocksNew, st2.BlocksNew, total)
	if st2.BlocksNew >= total || st2.BlocksNew == 0 {
		t.Fatalf("second run uploaded %d of %d blocks: want only the missing ones", st2.BlocksNew, total)
	}
	rep, err := r.Verify(ctx(t), VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify after resume: %v %+v", err, rep)
	}
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	np, _, err := r.Pull(ctx(t), fresh, p.VM, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameLocal(t, repo, fresh, p, np)
}

// TestStalledStore: a store that accepts connections and never answers
// fails the open within the timeout.
func TestStalledStore(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	o := Options{Store: StoreOptions{Endpoint: "http://" + l.Addr().String(), Bucket: "stalled", AccessKey: "a", SecretKey: "s", Timeout: time.Second},
		Secret: []byte("x")}
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Open(c, o)
	t.Logf("open of a stalled store: %v", err)
	if err == nil || c.Err() != nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("open of a stalled store: %v (context: %v)", err, c.Err())
	}
}

// TestTamperedObjects: a pack altered and another deleted behind cairn's
// back: verify names the points, disks and blocks; the reader and pull
// fail on them and never return wrong bytes; nothing is committed.
func TestTamperedObjects(t *testing.T) { s3test.Each(t, testTamperedObjects) }

func testTamperedObjects(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	repo := testutil.NewRepo(t)
	a := bigPoint(t, repo, "alpha", 5)
	b := bigPoint(t, repo, "beta", 6)
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{a, b}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	m, err := r.manifest(ctx(t), a.VM, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	altered, deleted := m.Packs[0].ID, m.Packs[1].ID
	data, err := r.st.get(ctx(t), packPrefix+altered, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if _, err := e.s3.PutObject(ctx(t), e.bucket, packPrefix+altered, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.s3.RemoveObject(ctx(t), e.bucket, packPrefix+deleted, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx(t), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.BadPoints) != 1 || rep.BadPoints[0] != "alpha "+a.ID {
		t.Fatalf("verify: bad points %v, %d bad blocks", rep.BadPoints, len(rep.BadBlocks))
	}
	packs := map[string]bool{}
	for _, bb := range rep.BadBlocks {
		if bb.VM != "alpha" || bb.Disk != "disk-0" {
			t.Fatalf("bad block %+v", bb)
		}
		packs[bb.Pack] = true
	}
	if !packs[altered] || !packs[deleted] {
		t.Fatalf("verify named packs %v, want %s and %s", packs, altered, deleted)
	}
	t.Logf("verify: %d bad blocks, first %+v", len(rep.BadBlocks), rep.BadBlocks[0])
	// The reader refuses the damaged blocks.
	dr, err := r.OpenDisk(ctx(t), a.VM, a.ID, "disk-0", 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := rep.BadBlocks[0].Offset
	buf := make([]byte, 4096)
	var be *BlockError
	if _, err := dr.ReadAt(buf, bad); !errors.As(err, &be) {
		t.Fatalf("read of a damaged block: %v", err)
	}
	// Pull fails and commits nothing.
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	if _, _, err := r.Pull(ctx(t), fresh, a.VM, a.ID); err == nil || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("pull of a damaged point: %v", err)
	}
	if pts, _ := fresh.Points(ctx(t), a.VM); len(pts) != 0 {
		t.Fatalf("a failed pull left %d points", len(pts))
	}
	// The other VM is intact.
	if _, _, err := r.Pull(ctx(t), fresh, b.VM, b.ID); err != nil {
		t.Fatal(err)
	}
}

// TestLocalPrunedDuringReplication: a point is forgotten locally while
// its replication runs, so the blocks only it held are released under the
// reader. The run fails cleanly (it never copies the released blocks as
// zeros), no remote point appears, and the next run copies what is left.
func TestLocalPrunedDuringReplication(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	p1 := bigPoint(t, repo, "vm", 41)
	rnd := rand.New(rand.NewPCG(43, 44))
	bs := int64(repo.BlockSize())
	// p2 rewrites 8-12 MiB: p1's versions there become p1's alone.
	p2 := writeIncr(t, repo, "vm", "disk-0", 24<<20, p1.Time.Add(time.Hour), map[int64][]byte{8 << 20: randBytes(rnd, 4<<20)})
	r := e.open()
	var forgetErr error
	done := false
	r.beforeRead = func(b int64) {
		if !done && b*bs >= 8<<20 {
			done = true
			_, forgetErr = repo.Forget(context.Background(), p1.VM, []string{p1.ID}, false)
		}
	}
	_, err := r.Replicate(ctx(t), repo, []blockmap.Point{p1}, ReplicateOptions{CacheDir: cacheDir(t)})
	if !done || forgetErr != nil {
		t.Fatalf("forget during replication: ran %v, %v", done, forgetErr)
	}
	if err == nil {
		t.Fatal("replication of a point forgotten midway succeeded")
	}
	t.Logf("replication failed as it should: %v", err)
	if pts, _, err := r.Points(ctx(t)); err != nil || len(pts) != 0 {
		t.Fatalf("remote points after the failed run: %v %v", pts, err)
	}
	r.beforeRead = nil
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p2}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	fresh := newRepoAt(t, t.TempDir()+"/fresh")
	np, _, err := r.Pull(ctx(t), fresh, p2.VM, p2.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameLocal(t, repo, fresh, p2, np)
}

// stallProxy forwards TCP to target until stall is set; then it stops
// moving bytes in either direction (a store that hangs mid-request).
type stallProxy struct {
	l      net.Listener
	target string
	stall  atomic.Bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{l: l, target: target}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *stallProxy) serve(c net.Conn) {
	defer c.Close()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 16<<10)
		for {
			n, err := src.Read(buf)
			for p.stall.Load() {
				time.Sleep(50 * time.Millisecond) // hold the bytes; never close
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(u, c)
	pipe(c, u)
}

// TestStalledStoreMidReplication: the store stops moving bytes in the
// middle of an upload. The run fails within its timeout instead of
// hanging, and no point appears.
func TestStalledStoreMidReplication(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(61, 62))
	// Packs larger than the socket buffers, so a stalled upload blocks
	// in the middle of its body.
	p := writePoint(t, repo, "stall", time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC),
		[]diskSpec{{name: "disk-0", size: 64 << 20, data: map[int64][]byte{0: randBytes(rnd, 64<<20)}}})
	proxy := newStallProxy(t, strings.TrimPrefix(e.c.Endpoint, "http://"))
	o := e.opts
	o.Store.Endpoint = "http://" + proxy.l.Addr().String()
	o.Store.Timeout = 2 * time.Second
	o.Store.MinRate = 16 << 20
	o.PackSize = 24 << 20
	r, err := Open(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// One upload at a time: the stall then always catches the second
	// pack mid-upload (with packs uploaded at once, all of them can be
	// stored before it, and the manifest's PUT, held by the proxy, lands
	// once the proxy lets its bytes go: a complete point).
	r.uploads = 1
	r.afterPack = func(n int64) {
		if n == 1 {
			proxy.stall.Store(true)
		}
	}
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, err = r.Replicate(c, repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)})
	if err == nil || c.Err() != nil {
		t.Fatalf("replication through a stalled store: %v (test context: %v)", err, c.Err())
	}
	t.Logf("failed as it should: %v", err)
	proxy.stall.Store(false)
	if pts, _, err := e.open().Points(ctx(t)); err != nil || len(pts) != 0 {
		t.Fatalf("points after the stall: %v %v", pts, err)
	}
}

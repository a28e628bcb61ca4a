package remote

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/s3test"
)

// countingProxy is an HTTP reverse proxy in front of the store that counts
// the response body bytes of every GET by object prefix: what crossed the
// wire, measured outside cairn.
type countingProxy struct {
	url  string
	mu   sync.Mutex
	gets map[string]int64 // "cairn/packs/" etc. → bytes
	reqs map[string]int
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &countingProxy{url: "http://" + l.Addr().String(), gets: map[string]int64{}, reqs: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u) // keeps the Host header: the signature holds
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet {
			return nil
		}
		key := "other"
		for _, p := range []string{"cairn/packs/", "cairn/maps/", "cairn/points/", "cairn/index/", "cairn/config"} {
			if strings.Contains(resp.Request.URL.Path, p) {
				key = p
			}
		}
		resp.Body = &countingBody{ReadCloser: resp.Body, add: func(n int) {
			cp.mu.Lock()
			cp.gets[key] += int64(n)
			cp.mu.Unlock()
		}}
		cp.mu.Lock()
		cp.reqs[key]++
		cp.mu.Unlock()
		return nil
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return cp
}

// take returns the counts since the last take and resets them.
func (cp *countingProxy) take() (map[string]int64, map[string]int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	g, r := cp.gets, cp.reqs
	cp.gets, cp.reqs = map[string]int64{}, map[string]int{}
	return g, r
}

type countingBody struct {
	io.ReadCloser
	add func(int)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.add(n)
	return n, err
}

// TestPullIncrementalDownloadsChanges: pulling the incremental points of
// a VM after its first point downloads the changed blocks (plus manifests
// and maps), not the whole point again, whether they are pulled oldest
// first or newest first, and every pulled point has the bytes of the
// original. Counted twice: the pull's own BytesDownloaded and a proxy in
// front of the real store (Ceph RGW and versitygw).
func TestPullIncrementalDownloadsChanges(t *testing.T) {
	s3test.Each(t, testPullIncrementalDownloadsChanges)
}

func testPullIncrementalDownloadsChanges(t *testing.T, c s3test.Engine) {
	e := newEnvOn(t, c, 0)
	src := newRepoAt(t, filepath.Join(t.TempDir(), "src"))
	bs := int64(src.BlockSize())
	rnd := rand.New(rand.NewPCG(11, 12))
	const size = 32 << 20
	data := randBytes(rnd, 12<<20) // 12 MiB of data at the disk's start
	disk := func() []diskSpec {
		return []diskSpec{{name: "scsi0-0", size: size, data: map[int64][]byte{0: append([]byte(nil), data...), 20 << 20: textBytes(1 << 20)}}}
	}
	t0 := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	pts := []blockmap.Point{writePoint(t, src, "inc", t0, disk())}
	// Each later point: 3 blocks rewritten, one block zeroed, one block
	// moved (the bytes of another block of the disk): 4 blocks to
	// download at most, the moved one is in the repository already.
	for i := 1; i <= 3; i++ {
		for _, b := range []int64{int64(7 * i), int64(50 + 13*i), int64(120 + 17*i)} {
			copy(data[b*bs:(b+1)*bs], randBytes(rnd, int(bs)))
		}
		zb := int64(100 + i)
		clear(data[zb*bs : (zb+1)*bs])
		mv := int64(150 + i)
		copy(data[mv*bs:(mv+1)*bs], data[(mv+10)*bs:(mv+11)*bs])
		pts = append(pts, writePoint(t, src, "inc", t0.Add(time.Duration(i)*24*time.Hour), disk()))
	}
	r := e.open()
	srcCache := cacheDir(t)
	if _, err := r.Replicate(ctx(t), src, pts, ReplicateOptions{CacheDir: srcCache}); err != nil {
		t.Fatal(err)
	}
	// The remote seen through the counting proxy.
	cp := newCountingProxy(t, c.Endpoint)
	po := e.opts
	po.Store.Endpoint = cp.url
	pr, err := Open(ctx(t), po)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })

	for _, order := range []string{"oldest first", "newest first"} {
		t.Run(strings.ReplaceAll(order, " ", "-"), func(t *testing.T) {
			dst := newRepoAt(t, filepath.Join(t.TempDir(), "dst"))
			cache := cacheDir(t)
			seq := append([]blockmap.Point(nil), pts...)
			if order == "newest first" {
				for i, j := 0, len(seq)-1; i < j; i, j = i+1, j-1 {
					seq[i], seq[j] = seq[j], seq[i]
				}
			}
			cp.take()
			for k, p := range seq {
				np, did, st, err := pr.PullWith(ctx(t), dst, p.VM, p.ID, PullOptions{CacheDir: cache})
				if err != nil || !did {
					t.Fatalf("pull %s: %v (pulled %v)", p.ID, err, did)
				}
				sameLocal(t, src, dst, p, np)
				gets, reqs := cp.take()
				var wire int64
				for _, n := range gets {
					wire += n
				}
				t.Logf("%s: data %d, fetched %d, local %d, downloaded %d (proxy: %d; packs %d in %d GETs, maps %d, manifests %d)",
					p.ID, st.BytesData, st.BytesFetched, st.BytesLocal, st.BytesDownloaded, wire,
					gets["cairn/packs/"], reqs["cairn/packs/"], gets["cairn/maps/"], gets["cairn/points/"])
				if k == 0 {
					if st.BytesFetched != st.BytesData {
						t.Errorf("first pull fetched %d of %d data bytes", st.BytesFetched, st.BytesData)
					}
					continue
				}
				// The blocks to download: oldest first the 3 rewritten
				// ones (the zeroed block is written locally, the moved
				// one copied from the repository); newest first also
				// the zeroed and the moved block, whose older bytes
				// the repository does not hold yet.
				n := int64(3)
				if order == "newest first" {
					n = 5
				}
				// Blobs of changed blocks (random: stored raw, plus
				// nonce and tag), a read-through gap of at most 64 KiB
				// per blob needed (at most one GET each), and the manifests and maps (< 64 KiB each here).
				limit := n*(bs+64) + n*(64<<10) + 4*(64<<10)
				if st.BytesDownloaded > limit || wire > limit {
					t.Errorf("pull %s downloaded %d bytes (proxy %d) for %d changed %d-byte blocks; want at most %d (the point holds %d)",
						p.ID, st.BytesDownloaded, wire, n, bs, limit, st.BytesData)
				}
				if gets["cairn/packs/"] > n*(bs+64)+n*(64<<10) {
					t.Errorf("pull %s read %d bytes of packs for %d changed blocks", p.ID, gets["cairn/packs/"], n)
				}
				if st.BytesFetched > n*bs {
					t.Errorf("pull %s fetched %d plaintext bytes, want at most %d", p.ID, st.BytesFetched, n*bs)
				}
			}
		})
	}

	// The VM's newest local point is a backup the remote does not have:
	// the pull takes equal blocks from the newest point it can prove (an
	// earlier pull), reading them from the local disk.
	t.Run("twin-not-newest", func(t *testing.T) {
		dst := newRepoAt(t, filepath.Join(t.TempDir(), "dst"))
		cache := cacheDir(t)
		if _, _, _, err := pr.PullWith(ctx(t), dst, pts[0].VM, pts[0].ID, PullOptions{CacheDir: cache}); err != nil {
			t.Fatal(err)
		}
		other := rand.New(rand.NewPCG(1, 2))
		writePoint(t, dst, "inc", t0.Add(30*24*time.Hour), []diskSpec{{name: "scsi0-0", size: size, data: map[int64][]byte{0: randBytes(other, 2<<20)}}})
		cp.take()
		np, _, st, err := pr.PullWith(ctx(t), dst, pts[1].VM, pts[1].ID, PullOptions{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		gets, _ := cp.take()
		if st.BytesFetched > 3*bs || gets["cairn/packs/"] > 3*(bs+64)+3*(64<<10) {
			t.Errorf("pull beside a newer local backup fetched %d plaintext bytes, %d bytes of packs; want at most 3 blocks", st.BytesFetched, gets["cairn/packs/"])
		}
		sameLocal(t, src, dst, pts[1], np)
	})

	// The twin's local bytes are damaged: the damaged block is not
	// copied but downloaded, and the pulled point is right.
	t.Run("damaged-local-twin", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "dst")
		dst := newRepoAt(t, dir)
		cache := cacheDir(t)
		if _, _, _, err := pr.PullWith(ctx(t), dst, pts[0].VM, pts[0].ID, PullOptions{CacheDir: cache}); err != nil {
			t.Fatal(err)
		}
		imgs, _ := filepath.Glob(filepath.Join(dir, "images", "*", "1.img"))
		if len(imgs) != 1 {
			t.Fatalf("images of generation 1: %v", imgs)
		}
		fh, err := os.OpenFile(imgs[0], os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt([]byte("damaged"), 40*bs+100); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		other := rand.New(rand.NewPCG(1, 2))
		writePoint(t, dst, "inc", t0.Add(30*24*time.Hour), []diskSpec{{name: "scsi0-0", size: size, data: map[int64][]byte{0: randBytes(other, 2<<20)}}})
		np, _, st, err := pr.PullWith(ctx(t), dst, pts[1].VM, pts[1].ID, PullOptions{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		if st.BytesFetched != 4*bs {
			t.Errorf("fetched %d plaintext bytes, want the 3 changed blocks and the damaged one (%d)", st.BytesFetched, 4*bs)
		}
		sameLocal(t, src, dst, pts[1], np)
	})

	// A record that does not name the remote point's manifest (its
	// source generation differs) proves nothing: every block is
	// downloaded, and the bytes are right.
	t.Run("record-mismatch", func(t *testing.T) {
		dst := newRepoAt(t, filepath.Join(t.TempDir(), "dst"))
		cache := cacheDir(t)
		np, _, _, err := pr.PullWith(ctx(t), dst, pts[0].VM, pts[0].ID, PullOptions{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		rec := filepath.Join(pr.pulledDir(cache, np.VM), strconv.FormatUint(uint64(np.Gen), 10))
		b, err := os.ReadFile(rec)
		if err != nil {
			t.Fatalf("no pull record: %v", err)
		}
		b = []byte(strings.Replace(string(b), `"source_generation":1`, `"source_generation":99`, 1))
		if err := os.WriteFile(rec, b, 0o600); err != nil {
			t.Fatal(err)
		}
		np, _, st, err := pr.PullWith(ctx(t), dst, pts[1].VM, pts[1].ID, PullOptions{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		if st.BytesFetched != st.BytesData || st.BytesLocal != 0 {
			t.Errorf("pull on an unproven base: fetched %d, local %d of %d", st.BytesFetched, st.BytesLocal, st.BytesData)
		}
		sameLocal(t, src, dst, pts[1], np)
	})

	// The repository that replicated the points lost the newest two
	// (forgotten here): pulling them back builds on the point it
	// replicated (its replicate state proves the remote copy).
	t.Run("replicated-here", func(t *testing.T) {
		if _, err := src.Forget(ctx(t), "inc", []string{pts[2].ID, pts[3].ID}, false); err != nil {
			t.Fatal(err)
		}
		for _, p := range pts[2:] {
			cp.take()
			np, did, st, err := pr.PullWith(ctx(t), src, p.VM, p.ID, PullOptions{CacheDir: srcCache})
			if err != nil || !did {
				t.Fatalf("pull %s back: %v (pulled %v)", p.ID, err, did)
			}
			gets, _ := cp.take()
			if st.BytesFetched > 3*bs || gets["cairn/packs/"] > 3*(bs+64)+3*(64<<10) {
				t.Errorf("pull %s back fetched %d plaintext bytes, %d bytes of packs; want at most 3 blocks", p.ID, st.BytesFetched, gets["cairn/packs/"])
			}
			// The pulled point has the bytes the remote holds for it.
			rd, err := pr.OpenDisk(ctx(t), p.VM, p.ID, "scsi0-0", 0)
			if err != nil {
				t.Fatal(err)
			}
			ld, err := src.OpenDisk(ctx(t), np, "scsi0-0")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readAll(t, rd, size), readAll(t, ld, size)) {
				t.Fatalf("point %s pulled back differs from its remote copy", p.ID)
			}
			ld.Close()
		}
	})

	// Reads of a remote point (mount --remote, export --remote,
	// restore-file --remote and restore vm --remote all read through
	// DiskReader) fetch byte ranges, not packs: one block read costs
	// about one block.
	t.Run("remote-read-ranges", func(t *testing.T) {
		rd, err := pr.OpenDisk(ctx(t), pts[3].VM, pts[3].ID, "scsi0-0", 0)
		if err != nil {
			t.Fatal(err)
		}
		cp.take()
		buf := make([]byte, bs)
		if _, err := rd.ReadAt(buf, 90*bs); err != nil {
			t.Fatal(err)
		}
		gets, reqs := cp.take()
		if gets["cairn/packs/"] > bs+64+64<<10 || reqs["cairn/packs/"] != 1 {
			t.Errorf("one block read fetched %d bytes of packs in %d GETs (a pack here is %d bytes)", gets["cairn/packs/"], reqs["cairn/packs/"], e.opts.PackSize)
		}
	})

}
